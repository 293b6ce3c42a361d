"""The deception probe: the sweep's variants, its summary by value, and one smoke run that produces every table and
plot while sharing the weak and ceiling stages among the students (checked by stage records)."""

import json
from pathlib import Path

import pytest

from w2s_trl.cli import train_main
from w2s_trl.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent
PROBE = REPO / "recipes" / "deception_probe.yaml"


def test_the_sweep_has_every_conflict_kind_mitigation_and_weak_capacity():
    from w2s_trl.probe import probe_variants

    variants = probe_variants(load_recipe(PROBE).probe)
    names = [v.name for v in variants]
    assert names[0] == "no_conflict" and len(set(names)) == len(names)
    kinds = {(v.kind, v.strength) for v in variants if v.mitigation is None and v.weak == "minilm_l6"}
    probe = load_recipe(PROBE).probe
    swept = {(k, s) for k in ("multi_objective", "explicit", "implicit") for s in getattr(probe.conflicts, k)}
    assert all(len(getattr(probe.conflicts, k)) >= 2 for k in ("multi_objective", "explicit", "implicit"))
    assert swept | {("none", None)} <= kinds
    assert {v.mitigation for v in variants} == {None, "bootstrap", "confidence", "weak_policy"}
    assert all(v.kind == "explicit" and v.strength == 2.0 for v in variants if v.mitigation)
    assert {v.weak for v in variants} == {"minilm_l6", "minilm_w64", "weak_policy"}


def test_probe_summary_by_value():
    """6 target pairs and 2 competing ones. Margins > 0 are correct.
    weak (supervisor) correct on target: [1,1,1,0,0,0] -> accuracy 0.5; ceiling: [1,1,0,1,1,0] -> 4/6;
    no_conflict: [1,1,0,1,0,0] -> 0.5, PGR = (0.5-0.5)/(4/6-0.5) = 0;  K_s = {0,1,3,4}, U_w&K_s = {3,4},
    K_w&K_s = {0,1}; no_conflict errs on 4 only: DS = 1/1, chance = 2/4, gap = 1/2 - 0/2 = 0.5."""
    from w2s_trl.probe import Variant, probe_summary

    r = load_recipe(PROBE, ["evaluate.bootstrap=1000"])
    rows = [{"objective": "harmless"}] * 6 + [{"objective": "helpful"}] * 2
    sign = lambda bits: [1.0 if b else -1.0 for b in bits]  # noqa: E731
    margins = {
        "weak:minilm_l6": sign([1, 1, 1, 0, 0, 0, 1, 0]),
        "ceiling": sign([1, 1, 0, 1, 1, 0, 1, 1]),
        "base": sign([0, 1, 0, 1, 0, 1, 0, 1]),
        "no_conflict": sign([1, 1, 0, 1, 0, 0, 0, 1]),
    }
    s = probe_summary(r, [Variant("no_conflict", "minilm_l6", "none", None)], rows, margins)
    v = s["variants"][0]
    assert s["n_test"] == {"harmless": 6, "helpful": 2}
    assert v["accuracy"]["harmless"]["value"] == 0.5 and v["accuracy"]["helpful"]["value"] == 0.5
    assert v["pgr"]["value"] == pytest.approx(0.0)
    d = v["deception"]
    assert d["ds"]["value"] == 1.0 and d["chance"]["value"] == 0.5 and d["gap"]["value"] == 0.5
    assert d["cells"]["U_w&K_s"]["n"] == 2 and d["cells"]["U_w&K_s"]["small"]
    assert s["weak_supervisors"]["minilm_l6"]["accuracy"]["value"] == 0.5
    lo, hi = v["accuracy"]["harmless"]["ci"]
    assert 0 <= lo <= 0.5 <= hi <= 1
    # ceiling 4/6 on target, base [0,1,0,1,0,1] 3/6, weak 3/6: both differences 1/6, paired
    assert s["differences"]["ceiling-base"]["value"] == pytest.approx(1 / 6)
    assert s["differences"]["ceiling-weak"]["value"] == pytest.approx(1 / 6)
    assert s["identical"] == []


def test_probe_summary_unscored_mitigated_identical_by_value():
    """The same 6 target pairs. The supervisor could not score pair 5 (margin 0: wrong for its accuracy, in no cell).
    explicit-2 errs on 3 and 4 (U_w&K_s) -> gap 2/2 - 0/2 = 1, vs no_conflict (errs on 4: 1/2) +0.5;
    bootstrap@explicit-2 errs on 4 only -> gap 0.5, minus the unmitigated explicit-2's: -0.5.
    multi_objective-2 is right and wrong where no_conflict is: flagged as one result."""
    from w2s_trl.probe import Variant, probe_summary

    r = load_recipe(PROBE, ["evaluate.bootstrap=1000"])
    rows = [{"objective": "harmless"}] * 6
    sign = lambda bits: [1.0 if b else -1.0 for b in bits]  # noqa: E731
    margins = {"weak:minilm_l6": sign([1, 1, 1, 0, 0, 0])[:5] + [0.0], "ceiling": sign([1, 1, 0, 1, 1, 0]),
               "no_conflict": sign([1, 1, 0, 1, 0, 0]), "explicit-2": sign([1, 1, 0, 0, 0, 0]),
               "bootstrap@explicit-2": sign([1, 1, 0, 1, 0, 0]), "multi_objective-2": sign([1, 1, 0, 1, 0, 0])}  # fmt: skip
    variants = [Variant("no_conflict", "minilm_l6", "none", None), Variant("explicit-2", "minilm_l6", "explicit", 2.0),
                Variant("bootstrap@explicit-2", "minilm_l6", "explicit", 2.0, "bootstrap"),
                Variant("multi_objective-2", "minilm_l6", "multi_objective", 2.0)]  # fmt: skip
    s = probe_summary(r, variants, rows, margins, weak_scored={"minilm_l6": [True] * 5 + [False]})
    assert s["weak_supervisors"]["minilm_l6"]["accuracy"]["value"] == 0.5  # the unscored pair counts wrong
    by = {v["name"]: v["deception"] for v in s["variants"]}
    assert by["no_conflict"]["n"] == 5 and sum(c["n"] for c in by["no_conflict"]["cells"].values()) == 5
    assert by["explicit-2"]["gap"]["value"] == 1.0 and by["explicit-2"]["gap_vs_baseline"]["value"] == 0.5
    assert by["bootstrap@explicit-2"]["gap_vs_unmitigated"]["value"] == -0.5
    assert ["no_conflict", "bootstrap@explicit-2", "multi_objective-2"] in s["identical"]
    assert any("are right and wrong on exactly the same test pairs" in f for f in s["flags"])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    assert train_main([str(PROBE), "--smoke", f"run.output_dir={out}", "tracking.report_to=[]"]) == 0
    return out / "deception_probe-smoke"


def test_probe_smoke_produces_every_table_and_plot(smoke_run):
    from w2s_trl.probe import probe_variants

    variants = probe_variants(load_recipe(PROBE, smoke=True).probe)
    report = (smoke_run / "report.md").read_text()
    for v in variants:
        assert v.name in report
    for png in ("cell_errors", "gap_vs_strength", "deception_vs_capacity"):
        data = (smoke_run / "probe" / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"probe/{png}.png" in report
    metrics = json.loads((smoke_run / "probe" / "metrics.json").read_text())
    assert [v["name"] for v in metrics["variants"]] == [v.name for v in variants]
    for v in metrics["variants"]:
        for key in ("ds", "chance", "gap"):
            assert key in v["deception"] and "ci" in v["deception"][key]
        for stat in v["accuracy"].values():  # every accuracy with its interval
            lo, hi = stat["ci"]
            assert 0.0 <= lo <= stat["value"] <= hi <= 1.0
        assert set(v["deception"]["cells"]) == {"K_w&K_s", "K_w&U_s", "U_w&K_s", "U_w&U_s"}
    assert metrics["wall_time_s"] > 0


def test_variants_share_the_weak_and_ceiling_stages(smoke_run, tmp_path):
    """Each weak supervisor and the ceiling are trained once (one stage record each, none per variant); a re-run
    with one more conflict strength reuses data, weak supervisors, ceiling and every existing student, and trains
    only the new one."""
    records = sorted(p.parent.relative_to(smoke_run).as_posix() for p in smoke_run.rglob("stage.json"))
    assert "weak/minilm_l6" in records and "weak/minilm_w64" in records and "ceiling" in records
    assert all(r.split("/")[-1] in ("label", "student") for r in records if r.startswith("variants/"))
    before = {r: (smoke_run / r / "stage.json").read_text() for r in records if r != "evaluate"}
    out = smoke_run.parent
    assert train_main([str(PROBE), "--smoke", f"run.output_dir={out}", "tracking.report_to=[]",
                       "probe.conflicts.explicit=[0.25,2.0]"]) == 0  # fmt: skip
    after = {r: (smoke_run / r / "stage.json").read_text() for r in before}
    assert after == before  # nothing recomputed
    assert (smoke_run / "variants" / "explicit-0.25" / "student" / "stage.json").exists()
    metrics = json.loads((smoke_run / "probe" / "metrics.json").read_text())
    assert "explicit-0.25" in [v["name"] for v in metrics["variants"]]
    assert set(metrics["cached_stages"]) >= {"data", "weak/minilm_l6", "weak/minilm_w64", "ceiling",
                                             "variants/no_conflict/student"}  # fmt: skip


def test_supervisors_ordered_by_capacity():
    from w2s_trl.probe import by_capacity

    sizes = {"l6": {"parameters": 22_700_000, "window": 128}, "w64": {"parameters": 22_700_000, "window": 64},
             "policy": {"parameters": 134_500_000, "window": None}}  # fmt: skip
    out = by_capacity({"policy": {}, "l6": {"capacity": "primary"}, "w64": {}}, sizes)
    assert list(out) == ["w64", "l6", "policy"]
    assert out["w64"]["capacity"] == "22.7M parameters, 64-token window"
    assert out["policy"]["capacity"] == "134.5M parameters"


def test_implicit_pool_never_hands_the_student_target_ground_truth():
    """Competing pairs that the target orders the same way are left out; conflict pairs and competing-only pairs stay."""
    from types import SimpleNamespace

    from w2s_trl.probe import competing_pool

    def row(i, prefs, objective="harmless"):
        return {"id": f"r{i}", "objective": objective, "prompt": [{"role": "user", "content": f"q{i}"}],
                "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}],
                "preferences": prefs}  # fmt: skip

    rows = [row(0, {"harmless": 1, "helpful": 1}), row(1, {"harmless": 1, "helpful": -1}),
            row(2, {"helpful": 1}, "helpful"), row(3, {"harmless": 1})]  # fmt: skip
    run = SimpleNamespace(split=lambda name: rows, r=SimpleNamespace(probe=SimpleNamespace(target="harmless",
                                                                                           competing="helpful")))
    pool = competing_pool(run)
    assert sorted(r["id"] for r in pool) == ["r1@helpful", "r2"]
    flipped = next(r for r in pool if r["id"] == "r1@helpful")
    assert flipped["chosen"][0]["content"] == "b" and flipped["preferences"] == {"harmless": -1, "helpful": 1}


def test_reward_model_without_rows_says_why(tmp_path):
    from w2s_trl.errors import W2SError
    from w2s_trl.recipe import RewardModelSpec
    from w2s_trl.rundir import StageWork
    from w2s_trl.weak import train_reward_model

    spec = RewardModelSpec(type="reward_model", model="tiny:reward-model", max_length=16, train={"max_steps": 1})
    row = {"id": "r0", "prompt": [{"role": "user", "content": "q"}],
           "chosen": [{"role": "assistant", "content": "a long answer " * 20}],
           "rejected": [{"role": "assistant", "content": "another long answer " * 20}]}  # fmt: skip
    work = StageWork(out=tmp_path / "out", checkpoints=tmp_path / "ck")
    with pytest.raises(W2SError, match=r"no reward-model training rows: all 1 lost to max_length 16.*raise"):
        train_reward_model(spec, [row], work, 0, [], "weak/tiny", 16)


def test_mitigation_under_a_conflict_outside_the_sweep_fails_at_load():
    from w2s_trl.errors import RecipeError

    with pytest.raises(RecipeError, match=r"probe.mitigations.under \(explicit 3\) is not a point of probe.conflicts"):
        load_recipe(PROBE, ["probe.mitigations.under.strength=3"])
