"""Recipe loading: every shipped recipe validates; each kind of bad input gets its own clear error."""

import re
from pathlib import Path

import pytest
import yaml

from w2s_trl.errors import RecipeError
from w2s_trl.recipe import load_recipe, load_reward_spec

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if "accelerate" not in p.parts)  # those: accelerate's
ACCELERATE = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))
DEFAULT = REPO / "recipes" / "dpo_weak_rm.yaml"
REWARDS = sorted((REPO / "reward").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_documents_itself(path):
    recipe = load_recipe(path)
    header = path.read_text().splitlines()[:12]
    assert any(f"w2s_trl/train.py {path.relative_to(REPO)}" in line for line in header), "header must show the launch command"
    assert recipe.run.name


@pytest.mark.parametrize("path", REWARDS, ids=lambda p: p.name)
def test_every_reward_spec_loads(path):
    assert load_reward_spec(path).type


def write_recipe(tmp_path, edit) -> Path:
    """The default recipe, edited by `edit(dict)`, written next to a copy of reward/."""
    raw = yaml.safe_load((REPO / "recipes" / "dpo_weak_rm.yaml").read_text())
    edit(raw)
    (tmp_path / "recipes").mkdir(exist_ok=True)
    (tmp_path / "reward").mkdir(exist_ok=True)
    for spec in REWARDS:
        (tmp_path / "reward" / spec.name).write_text(spec.read_text())
    path = tmp_path / "recipes" / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# Each kind of bad input gets its own message: (case, edit of the default recipe, expected message).
BAD_RECIPES = [
    ("unknown_top_level_key", lambda r: r.update(trainer={"x": 1}),
     r"r\.yaml: invalid recipe(.|\n)*trainer: unknown key; allowed here: run, data"),
    ("unknown_nested_key_lists_allowed_keys", lambda r: r["strong"]["lora"].update(rank=8),
     r"strong\.lora\.rank: unknown key; allowed here: r, alpha, dropout"),
    ("wrong_type_shows_value_given", lambda r: r["run"].update(seed="seven"),
     r"run\.seed: .*integer.*\(given: 'seven'\)"),
    ("unknown_trainer", lambda r: r["align"].update(trainer="trpo"),
     r"align\.trainer: Input should be 'dpo'.*\(given: 'trpo'\)"),
    ("unknown_model_spec", lambda r: r["strong"].update(model="embedded:gpt5"),
     r"strong\.model: unknown causal model 'embedded:gpt5'; allowed here: embedded:smollm2"),
    ("reward_model_spec_must_be_a_reward_model", lambda r: r["weak"].update(reward={"type": "reward_model", "model": "tiny:causal-lm"}),
     r"weak\.reward\.model: unknown reward model 'tiny:causal-lm'"),
    ("model_spec_that_is_neither_path_nor_hub_id", lambda r: r["strong"].update(model="./no/such/folder"),
     "neither an existing model folder nor a hub id"),
    ("unknown_trl_argument_is_named_with_suggestion", lambda r: r["align"]["args"].update(betta=0.2),
     r"align\.args: unknown DPOConfig argument 'betta'; did you mean beta"),
    ("bad_trl_argument_value", lambda r: r["align"]["args"].update(lr_scheduler_type="zigzag"),
     r"align\.args: 'lr_scheduler_type': 'zigzag' is not one of linear, cosine"),
    ("args_owned_by_w2s_trl", lambda r: r["align"]["args"].update(output_dir="/tmp/x"),
     r"'output_dir' is set by w2s-trl from the run directory"),
    ("reward_training_args_checked_against_reward_config", lambda r: r["weak"].update(reward={"model": "tiny:reward-model", "train": {"beta": 1}}),
     r"weak\.reward\.train: unknown RewardConfig argument 'beta'"),
    ("cross_field_check_prints_both_values", lambda r: r["align"].update(ceiling=False),
     "region_reference is 'ceiling' but align.ceiling is false"),
    ("region_reference_must_not_be_the_scored_model", lambda r: r["evaluate"].update(region_reference="student"),
     r"evaluate\.region_reference: 'student' is the model being scored: its cells would compare the student with "
     r"itself\. Use ceiling"),
    ("region_reference_base_needs_the_base", lambda r: r["evaluate"].update(region_reference="base", base=False),
     "region_reference is 'base' but evaluate.base is false"),
    ("bootstrap_needs_1000_resamples", lambda r: r["evaluate"].update(bootstrap=100),
     r"evaluate\.bootstrap: Input should be greater than or equal to 1000"),
    ("on_invalid_values", lambda r: r["data"].update(on_invalid="ignore"),
     r"data\.on_invalid: Input should be 'skip' or 'error' \(given: 'ignore'\)"),
    ("hub_objective_values", lambda r: r["data"].update(hub_objective="honest"),
     r"data\.hub_objective: Input should be 'helpful' or 'harmless'"),
    ("testbed_ranges", lambda r: r["data"].update(testbed={"history_turns": [5, 2]}),
     r"data\.testbed\.history_turns: .*0 <= min <= max, got \[5, 2\]"),
    ("testbed_unknown_stratum", lambda r: r["data"].update(testbed={"harmless_strata": {"sneaky": 1}}),
     r"data\.testbed\.harmless_strata\.sneaky"),
    ("push_to_hub_is_not_a_trainer_argument", lambda r: r["align"]["args"].update(push_to_hub=True),
     r"align\.args: 'push_to_hub': a trainer would push its checkpoints folder"),
    ("hub_token_never_in_a_recipe", lambda r: r["align"]["args"].update(hub_token="hf_abc"),
     r"'hub_token': a secret does not belong in a recipe file .* set HF_TOKEN in the environment"),
    ("report_to_values", lambda r: r["tracking"].update(report_to=["comet"]),
     r"tracking\.report_to\.0: Input should be 'wandb', 'tensorboard' or 'trackio'"),
    ("online_rl_has_no_ceiling", lambda r: r["align"].update(trainer="grpo", args={"max_steps": 2}),
     r"align\.ceiling is true but align\.trainer is grpo: online RL needs a reward for sampled completions"),
    ("online_rl_cannot_use_gold", lambda r: (r["align"].update(trainer="ppo", ceiling=False, args={}),
                                             r["evaluate"].update(region_reference="base"),
                                             r["weak"].update(reward={"type": "gold"})),
     r"weak\.reward has a gold reward; align\.trainer ppo scores sampled completions"),
    ("ppo_arguments_are_checked", lambda r: (r["align"].update(trainer="ppo", ceiling=False, args={"kl_coeff": 0.1}),
                                             r["evaluate"].update(region_reference="base")),
     r"align\.args: unknown PPOSettings argument 'kl_coeff'; did you mean kl_coef"),
    ("ppo_minibatch_within_batch", lambda r: (r["align"].update(trainer="ppo", ceiling=False,
                                                                args={"batch_size": 4, "minibatch_size": 8}),
                                              r["evaluate"].update(region_reference="base")),
     r"PPOSettings rejected these arguments: minibatch_size 8 must lie in \[1, batch_size 4\]"),
    ("grpo_arguments_are_checked_by_trl", lambda r: (r["align"].update(trainer="grpo", ceiling=False,
                                                                       args={"num_generations": 3}),
                                                     r["evaluate"].update(region_reference="base")),
     r"align\.args: GRPOConfig rejected these arguments: generation_batch_size \(8\) must be divisible by "
     r"num_generations \(3\)"),
    ("datasets_or_source_not_both", lambda r: r["data"].update(source="x.jsonl", datasets=[{"path": "y.jsonl"}]),
     r"data: .*set either `source` \(with hub_name/hub_data_dir\) or `datasets`, not both: source is 'x.jsonl'"),
    ("mixture_fractions_all_or_none", lambda r: r["data"].update(datasets=[{"path": "a", "fraction": 0.5}, {"path": "b"}]),
     r"`fraction` must be set for every entry of `datasets` or for none \(set on 1 of 2\)"),
    ("empty_source", lambda r: r["data"].update(source=""), r"data\.source: String should have at least 1 character"),
    ("chat_template_must_parse", lambda r: r["strong"].update(chat_template="{% for m in messages %}{{ m.content }"),
     r"strong\.chat_template: .*the template does not parse \(line 1: unexpected '}'\)"),
    ("chat_template_file_must_exist", lambda r: r["strong"].update(chat_template="templates/none.jinja"),
     r"strong\.chat_template: .*neither Jinja text .* nor a readable template file"),
    ("chat_template_must_read_messages", lambda r: r["strong"].update(chat_template="{{ 'hello' }}"),
     r"strong\.chat_template: .*never reads `messages`"),
    ("split_fractions_must_sum_to_one", lambda r: r["data"].update(fractions={"weak_train": 0.5, "w2s_train": 0.5, "test": 0.5}),
     "must sum to 1, got 1.5"),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_RECIPES], ids=[c[0] for c in BAD_RECIPES])
def test_bad_recipe_is_rejected_with_a_clear_message(tmp_path, edit, message):
    path = write_recipe(tmp_path, edit)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_missing_reward_file(tmp_path):
    path = write_recipe(tmp_path, lambda r: r["weak"].update(reward="reward/nope.yaml"))
    with pytest.raises(RecipeError, match=r"weak\.reward: file 'reward/nope.yaml' not found"):
        load_recipe(path)


def test_invalid_reward_file_names_that_file(tmp_path):
    path = write_recipe(tmp_path, lambda r: r["weak"].update(reward="reward/bad.yaml"))
    (tmp_path / "reward" / "bad.yaml").write_text("type: reward_model\nmodel: tiny:reward-model\nmax_len: 3\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: invalid reward specification(.|\n)*max_len: unknown key; allowed here: type, model"):
        load_recipe(path)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="nope.yaml: file not found"):
        load_recipe(tmp_path / "nope.yaml")


# ---- overrides -----------------------------------------------------------------------------------------------------


def test_overrides_are_typed_like_their_field():
    r = load_recipe(
        DEFAULT,
        ["run.seed=7", "run.name=123", "align.args.beta=0.25", "strong.lora.target_modules=[q_proj]",
         "align.ceiling=false", "evaluate.region_reference=base", "tracking.report_to=[]"],
    )  # fmt: skip
    assert r.run.seed == 7
    assert r.run.name == "123"  # a str field keeps the text, not the int 123
    assert r.align.args["beta"] == 0.25
    assert r.strong.lora.target_modules == ["q_proj"]
    assert r.align.ceiling is False and r.tracking.report_to == []


def test_override_of_unknown_key():
    with pytest.raises(RecipeError, match=r"override 'run.sed': 'sed' is not a key of run; allowed: name, output_dir, seed"):
        load_recipe(DEFAULT, ["run.sed=1"])


def test_override_with_wrong_type_is_caught_by_validation():
    with pytest.raises(RecipeError, match=r"run\.seed: .*\(given: 'abc'\)"):
        load_recipe(DEFAULT, ["run.seed=abc"])


def test_override_without_equals():
    with pytest.raises(RecipeError, match="must look like key.path=value"):
        load_recipe(DEFAULT, ["run.seed"])


def test_smoke_swaps_models_and_shrinks_splits():
    r = load_recipe(DEFAULT, smoke=True)
    assert r.strong.model == "tiny:causal-lm" and r.weak.reward.model == "tiny:reward-model"
    assert r.run.name.endswith("-smoke") and r.data.max_rows.test <= 16 and r.align.args["max_steps"] == 2


# ---- reward specifications: density ratio --------------------------------------------------------------------------


def write_spec(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("type: density_ratio\npair: models\nstrong: {model: tiny:causal-lm}\n",
         "pair 'models' needs strong, weak; missing: weak"),
        ("type: density_ratio\npair: models\nstrong: {model: tiny:causal-lm}\nweak: {model: tiny:causal-lm}\n"
         "model: tiny:causal-lm\n", "pair 'models' does not use model"),
        ("type: density_ratio\npair: adapter\nbase: tiny:causal-lm\nadapter: no/such/adapter\n",
         "file 'no/such/adapter' not found"),
        ("type: density_ratio\npair: models\nstrong: {model: tiny:causal-lm}\nweak: {model: tiny:causal-lm}\nk: 2\n",
         "k is 2 but no exemplars are given"),
        ("type: density_ratio\npair: models\nstrong: {model: tiny:causal-lm}\nweak: {model: tiny:causal-lm}\n"
         "router: {type: keywords}\n", "router.type 'keywords' needs router.keywords"),
        ("type: density_ratio\npair: models\nstrong: {model: tiny:reward-model}\nweak: {model: tiny:causal-lm}\n",
         "strong.model: unknown causal model 'tiny:reward-model'"),
        ("type: density_ratio\nnormalise: mean\n", "normalise: unknown key; allowed here: type, pair, strong, weak"),
        ("type: magic\nmodel: x\n", "does not match any of the expected tags: 'density_ratio', 'gold', 'multi_objective', 'reward_model'"),
    ],
)  # fmt: skip
def test_density_ratio_spec_errors(tmp_path, text, message):
    with pytest.raises(RecipeError, match=r"spec\.yaml: invalid reward specification(.|\n)*" + re.escape(message)):
        load_reward_spec(write_spec(tmp_path, text))


def test_spec_files_resolve_relative_to_the_spec(tmp_path):
    (tmp_path / "reward" / "crit").mkdir(parents=True)
    (tmp_path / "reward" / "crit" / "safety.txt").write_text("be safe")
    spec = tmp_path / "reward" / "dr.yaml"
    spec.write_text("type: density_ratio\npair: models\nstrong: {model: tiny:causal-lm}\nweak: {model: tiny:causal-lm}\n"
                    "criteria: {safety: reward/crit/safety.txt}\n")  # fmt: skip
    loaded = load_reward_spec(spec)
    assert Path(loaded.criteria["safety"]).read_text() == "be safe"


def test_simpo_fixes_loss_type_and_cpo_alpha(tmp_path):
    path = write_recipe(tmp_path, lambda r: r["align"].update(trainer="simpo", args={"beta": 2.0, "cpo_alpha": 1.0}))
    with pytest.raises(RecipeError, match=r"align\.args: simpo fixes cpo_alpha=0\.0 \(got 1\.0\)"):
        load_recipe(path)
    path = write_recipe(tmp_path, lambda r: r["align"].update(trainer="simpo", args={"beta": 2.0, "simpo_gamma": 0.5}))
    recipe = load_recipe(path)
    assert recipe.align.trl_args() == {"beta": 2.0, "simpo_gamma": 0.5, "loss_type": "simpo", "cpo_alpha": 0.0}


def test_best_of_n_cannot_have_a_ceiling(tmp_path):
    path = write_recipe(tmp_path, lambda r: r["label"].update(method="best_of_n"))
    with pytest.raises(RecipeError, match="label.method is 'best_of_n' but align.ceiling is true"):
        load_recipe(path)


def test_loading_a_recipe_leaves_no_device_state_behind():
    """Validating trainer arguments builds a TrainingArguments, which starts accelerate's PartialState in CPU mode
    (use_cpu=True); left behind, it would put every later model load on the CPU on a GPU machine."""
    import subprocess
    import sys

    code = (
        "from accelerate.state import PartialState\n"
        "from w2s_trl.recipe import load_recipe\n"
        f"load_recipe({str(RECIPES[0])!r})\n"
        "assert PartialState._shared_state == {}, PartialState._shared_state\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr[-2000:]


def test_max_length_auto_is_accepted_and_resolved_by_the_pipeline():
    r = load_recipe(DEFAULT, ["align.args.max_length=auto", "weak.reward.max_length=auto"])
    assert r.align.max_length_setting() == "auto" and r.weak.reward.max_length == "auto"
    assert r.align.trl_args(max_length=200)["max_length"] == 200
    r = load_recipe(DEFAULT, ["align.args.max_length=300"])
    assert r.align.trl_args(max_length=200)["max_length"] == 300  # an explicit value wins


def test_trl_style_flags_are_align_args_overrides():
    from w2s_trl.cli import trainer_flags, train_parser
    from w2s_trl.errors import W2SError

    argv = ["--beta", "0.2", "r.yaml", "--smoke", "run.name=x", "--learning-rate=1e-4", "--stop-after", "data"]
    got = trainer_flags(argv)
    assert got == ["align.args.beta=0.2", "r.yaml", "--smoke", "run.name=x", "align.args.learning_rate=1e-4",
                   "--stop-after", "data"]  # fmt: skip
    args = train_parser().parse_intermixed_args(got)  # what train_main parses
    assert args.recipe == "align.args.beta=0.2" or "r.yaml" in (args.recipe, *args.overrides)
    with pytest.raises(W2SError, match="--beta needs a value"):
        trainer_flags(["r.yaml", "--beta"])
    recipe = load_recipe(REPO / "recipes" / "dpo_weak_rm.yaml", [a for a in trainer_flags(["--beta", "0.3"])])
    assert recipe.align.args["beta"] == 0.3
    with pytest.raises(RecipeError, match="unknown DPOConfig argument 'betta'"):
        load_recipe(REPO / "recipes" / "dpo_weak_rm.yaml", trainer_flags(["--betta", "0.3"]))


def test_trl_style_flags_through_the_cli(tmp_path):
    from w2s_trl.cli import train_main

    recipe = str(REPO / "recipes" / "dpo_weak_rm.yaml")
    args = ["--beta", "0.3", recipe, "--smoke", f"run.output_dir={tmp_path}", "--stop-after", "data", "run.name=cli"]
    assert train_main(args) == 0
    import yaml

    (path,) = tmp_path.glob("*/recipe.resolved.yaml")  # an override given after --smoke wins: run.name is "cli"
    resolved = yaml.safe_load(path.read_text())
    assert resolved["align"]["args"]["beta"] == 0.3 and resolved["run"]["name"] == "cli"


def test_chat_template_override_reaches_the_strong_tokenizer(tmp_path):
    """A house template (file path) replaces the tokenizer's own wherever the strong model's text is rendered."""
    from w2s_trl.align import load_strong_base

    template = tmp_path / "house.jinja"
    template.write_text("{% for m in messages %}<<{{ m.role }}>>{{ m.content }}\n{% endfor %}")
    path = write_recipe(tmp_path, lambda r: r["strong"].update(model="tiny:causal-lm", chat_template=str(template)))
    _, tok = load_strong_base(load_recipe(path))
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                   tokenize=False)  # fmt: skip
    assert text == "<<user>>hi\n<<assistant>>yo\n"


def test_report_to_needs_its_package(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a))
    path = write_recipe(tmp_path, lambda r: r["tracking"].update(report_to=["wandb", "trackio"]))
    with pytest.raises(RecipeError, match=r"tracking\.report_to: .*trackio is not installed: pip install trackio"):
        load_recipe(path)


def test_yaml_traps_are_caught_at_load(tmp_path):
    """A key twice on one line, and a few hundred bytes of nested aliases that expand to billions of values."""
    one_line = tmp_path / "dup.yaml"
    one_line.write_text("run: {name: a, name: b}\n")
    with pytest.raises(RecipeError, match=r"key 'name' given twice \(lines 1 and 1\)"):
        load_recipe(one_line)
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8)))
    with pytest.raises(RecipeError, match="more than 100,000 values once YAML aliases are expanded"):
        load_recipe(laughs)


def test_output_dir_may_live_under_usr(tmp_path):
    """Only the system trees (/proc, /sys, /dev) and the system folders themselves are refused: a Docker WORKDIR such
    as /usr/src/app is a user's place."""
    from w2s_trl.recipe import RunSection

    assert RunSection(name="x", output_dir="/usr/src/app/runs").output_dir == "/usr/src/app/runs"
    for bad in ("/usr", "/proc/1", "/dev/shm/x"):
        with pytest.raises(ValueError, match="is a system folder"):
            RunSection(name="x", output_dir=bad)
