"""Errors a user can cause. Each names the file, the key and the fix (CONVENTIONS.md 9)."""


class W2SError(Exception):
    """Base class for every user-facing error of w2s-trl."""


class RecipeError(W2SError):
    """A recipe or reward specification is malformed: wrong key, type or value."""


class DataError(W2SError):
    """A dataset cannot be read or is not in a supported format."""


class ModelSpecError(W2SError):
    """A model field names something that cannot be loaded."""


def printable(text: str, n: int = 60) -> str:
    """A user-given string for an error message: newlines, NULs and surrogates escaped (never printed raw), at most
    `n` characters and an ellipsis."""
    text = str(text).encode("unicode_escape").decode("ascii")
    return text if len(text) <= n else text[:n] + "..."


def path_exists(path, kind: str = "any") -> bool:
    """Whether a user-given path exists (kind "file" / "dir": and is one). A name the OS cannot even look up (too
    long, a NUL byte, a surrogate) does not exist, instead of raising from inside a validation."""
    from pathlib import Path

    try:
        p = Path(path)
        return p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
    except (OSError, ValueError):
        return False
