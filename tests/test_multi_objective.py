"""Multi-objective rewards by value: aggregation, fixed normalisation, gold, per-objective components; and the data
side they read (preferences pooled across rows that share a pair, rows oriented by an objective)."""

import math

import pytest

from w2s_trl.data import attach_preferences, objective_rows
from w2s_trl.rewards import GoldSpec, MultiObjectiveSpec, SourceContext, build_reward_source
from w2s_trl.rewards.base import RewardSource
from w2s_trl.rewards.gold import gold_rewards
from w2s_trl.rewards.multi_objective import MultiObjectiveSource, aggregate, fit_stats


def msg(role, text):
    return [{"role": role, "content": text}]


def pair(i, objective, chosen, rejected, prompt="p"):
    return {"id": f"r{i}", "objective": objective, "prompt": msg("user", prompt),
            "chosen": msg("assistant", chosen), "rejected": msg("assistant", rejected)}  # fmt: skip


class Fixed(RewardSource):
    """A source whose reward is a fixed number per response text (so aggregation can be checked by hand)."""

    def __init__(self, table):
        self.table = table

    def score(self, prompts, completions, ids=None, count=None, partners=None):
        return [self.table[c[-1]["content"]] for c in completions]


def test_weighted_sum_by_value():
    # r = 1 * [1, 2] + 0.5 * [4, -2] = [3, 1]; a None in a weighted objective makes the row None
    assert aggregate({"a": [1.0, 2.0, None], "b": [4.0, -2.0, 0.0]}, {"a": 1.0, "b": 0.5}, "weighted_sum") == [3.0, 1.0, None]
    # weight 0: that objective is not read (its None does not matter)
    assert aggregate({"a": [1.0], "b": [None]}, {"a": 2.0, "b": 0.0}, "weighted_sum") == [2.0]


def test_normalize_then_sum_uses_fixed_statistics_so_a_row_does_not_depend_on_its_batch():
    # fixed on weak_train: a ~ mean 1, std 2; b ~ mean 0, std 0.5.  r = (x_a - 1)/2 + 2 * (x_b - 0)/0.5
    stats = {"a": {"mean": 1.0, "std": 2.0}, "b": {"mean": 0.0, "std": 0.5}}
    weights = {"a": 1.0, "b": 2.0}
    alone = aggregate({"a": [3.0], "b": [0.25]}, weights, "normalize_then_sum", stats)
    assert alone == [pytest.approx((3 - 1) / 2 + 2 * 0.25 / 0.5)]  # 1 + 1 = 2
    batch = aggregate({"a": [3.0, -9.0, 40.0], "b": [0.25, 7.0, -3.0]}, weights, "normalize_then_sum", stats)
    assert batch[0] == alone[0]


def test_normalize_then_sum_without_statistics_is_batch_zscores():
    # a = [0, 2]: mean 1, population std 1 -> z = [-1, 1]; b = [0, 0]: std 0 -> treated as 1, z = [0, 0]
    assert aggregate({"a": [0.0, 2.0], "b": [0.0, 0.0]}, {"a": 1.0, "b": 1.0}, "normalize_then_sum") == [-1.0, 1.0]
    with pytest.raises(ValueError, match="at least 2 completions"):
        aggregate({"a": [1.0], "b": [1.0]}, {"a": 1.0, "b": 1.0}, "normalize_then_sum")


def test_fit_stats_by_value():
    s = fit_stats([1.0, 3.0, None, 5.0])  # mean 3, population variance (4 + 0 + 4) / 3
    assert s["mean"] == 3.0 and s["std"] == pytest.approx(math.sqrt(8 / 3)) and s["n"] == 3


def test_attach_preferences_pools_rows_that_share_a_pair():
    rows = [
        pair(0, "harmless", "refuse", "comply"),                 # harmful twin: harmlessness prefers the refusal
        pair(1, "helpful", "comply", "refuse"),                  # its conflict row: helpfulness prefers compliance
        pair(2, "helpful", "42", "41", prompt="other"),          # nothing to pool with
    ]
    attach_preferences(rows)
    assert rows[0]["preferences"] == {"harmless": 1, "helpful": -1}
    assert rows[1]["preferences"] == {"harmless": -1, "helpful": 1}
    assert rows[2]["preferences"] == {"helpful": 1}


def test_objective_rows_orient_by_the_objective_and_drop_duplicates():
    rows = attach_preferences([pair(0, "harmless", "refuse", "comply"), pair(1, "helpful", "comply", "refuse"),
                               pair(2, "harmless", "a", "b", prompt="q")])  # fmt: skip
    helpful = objective_rows(rows, "helpful")
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in helpful] == [("comply", "refuse")]
    assert helpful[0]["objective"] == "helpful" and helpful[0]["preferences"] == {"harmless": -1, "helpful": 1}
    assert len(objective_rows(rows, "harmless")) == 2


def test_gold_reward_by_value():
    rows = attach_preferences([pair(0, "harmless", "refuse", "comply"), pair(1, "helpful", "comply", "refuse"),
                               pair(2, "harmless", "a", "b", prompt="q")])  # fmt: skip
    sides = [{**rows[0], "_side": "chosen"}, {**rows[0], "_side": "rejected"}, {**rows[2], "_side": "chosen"}]
    # row 0's chosen (the refusal) is what helpfulness disprefers: -margin/2; its rejected +margin/2; row 2 knows no
    # helpful ground truth: 0
    assert gold_rewards(sides, "helpful", 2.0) == [-1.0, 1.0, 0.0]
    source = build_reward_source(MultiObjectiveSpec(objectives={"helpful": {"reward": {"type": "gold"}}}))
    assert source.score_pairs(rows[:1]) == ([-0.5], [0.5])
    with pytest.raises(ValueError, match="needs `objective`"):
        build_reward_source(GoldSpec())


def test_per_objective_rewards_equal_the_sources_outputs_and_the_total_mixes_them():
    rows = attach_preferences([pair(0, "harmless", "refuse", "comply"), pair(1, "helpful", "comply", "refuse")])[:1]
    harmless = Fixed({"refuse": 2.0, "comply": -1.0})
    spec = MultiObjectiveSpec(objectives={"harmless": {"weight": 1.0, "reward": {"type": "gold"}},
                                          "helpful": {"weight": 4.0, "reward": {"type": "gold"}}})  # fmt: skip
    source = MultiObjectiveSource(spec, {"harmless": harmless, "helpful": build_reward_source(
        GoldSpec(objective="helpful"))})  # fmt: skip
    parts = source.score_pair_components(rows)
    assert parts["harmless"] == ([2.0], [-1.0]) and parts["helpful"] == ([-0.5], [0.5])
    # total = 1 * harmless + 4 * helpful: chosen 2 - 2 = 0, rejected -1 + 2 = 1 -> the conflict flips the pair
    assert parts["total"] == ([0.0], [1.0])


def test_label_rows_keep_every_objective_reward_in_labelled_order(tmp_path):
    from w2s_trl.data import read_jsonl
    from w2s_trl.label import label_with_source

    rows = attach_preferences([pair(0, "harmless", "refuse", "comply"), pair(1, "helpful", "comply", "refuse"),
                               pair(2, "harmless", "safe", "unsafe", prompt="q")])  # fmt: skip
    rows = [rows[0], rows[2]]
    harmless = Fixed({"refuse": 2.0, "comply": -1.0, "safe": 1.0, "unsafe": 0.0})
    spec = MultiObjectiveSpec(objectives={"harmless": {"weight": 1.0, "reward": {"type": "gold"}},
                                          "helpful": {"weight": 4.0, "reward": {"type": "gold"}}})  # fmt: skip
    source = MultiObjectiveSource(spec, {"harmless": harmless, "helpful": build_reward_source(
        GoldSpec(objective="helpful"))})  # fmt: skip
    record = label_with_source(source, rows, tmp_path, None)
    labelled = {r["id"]: r for r in read_jsonl(tmp_path / "w2s_train.labelled.jsonl")}
    # r0: totals chosen 0, rejected 1 -> swapped: the labelled chosen is "comply", rewards in that order
    assert labelled["r0"]["chosen"][0]["content"] == "comply" and labelled["r0"]["gt_label"] == 0
    assert labelled["r0"]["rewards"] == {"harmless": [-1.0, 2.0], "helpful": [0.5, -0.5]}
    assert labelled["r2"]["rewards"] == {"harmless": [1.0, 0.0], "helpful": [0.0, 0.0]}
    assert record["objectives"]["harmless"]["agrees_with_gt"] == 1.0
    assert record["objectives"]["helpful"]["agrees_with_gt"] == 0.0  # never above: one conflict, one tie (0 = 0)


def test_normalize_then_sum_refuses_pairs_without_fixed_statistics():
    rows = attach_preferences([pair(0, "harmless", "refuse", "comply")])
    spec = MultiObjectiveSpec(aggregation="normalize_then_sum", objectives={
        "harmless": {"reward": {"type": "gold"}}, "helpful": {"reward": {"type": "gold"}}})  # fmt: skip
    source = build_reward_source(spec)
    with pytest.raises(ValueError, match="fit_normalization"):
        source.score_pairs(rows)
    stats = source.fit_normalization(rows + rows)
    assert stats["harmless"] == {"mean": 0.0, "std": 0.5, "n": 4}
    assert source.score_pairs(rows) == ([1.0], [-1.0])  # (0.5 - 0) / 0.5 + helpful 0 (no ground truth: 0, std 1)


def test_multi_objective_spec_checks():
    with pytest.raises(ValueError, match="every objective has weight 0"):
        MultiObjectiveSpec(objectives={"a": {"weight": 0, "reward": {"type": "gold"}}})
    spec = MultiObjectiveSpec(objectives={"harmless": {"reward": {"type": "reward_model", "model": "tiny:reward-model"}},
                                          "helpful": {"reward": {"type": "gold"}}})  # fmt: skip
    assert list(spec.trained()) == ["weak.harmless"] and spec.model_specs() == ["tiny:reward-model"]
    ctx = SourceContext()
    assert ctx.trained == {}


def test_hub_subsets_are_read_per_objective_and_pku_rows_know_both(monkeypatch):
    import w2s_trl.data as data

    calls = []

    def fake_hub(dataset_id, split, name=None, data_dir=None, data_files=None, columns=None):
        calls.append((dataset_id, split, name, data_dir))
        text = "harm" if data_dir == "harmless-base" else "help"
        return [{"chosen": f"\n\nHuman: {text} q\n\nAssistant: good", "rejected": f"\n\nHuman: {text} q\n\nAssistant: bad"}]

    monkeypatch.setattr(data, "read_hub_dataset", fake_hub)
    loaded = data.load_source("Anthropic/hh-rlhf", objectives=["helpful", "harmless"],
                              hub_data_dir={"harmless": "harmless-base", "helpful": "helpful-base"})  # fmt: skip
    assert sorted(r["objective"] for r in loaded.rows) == ["harmless", "helpful"]
    assert {c[3] for c in calls} == {"harmless-base", "helpful-base"}
    pku = {"prompt": "q", "response_0": "a", "response_1": "b", "better_response_id": 0, "safer_response_id": 1}
    row = data.normalize_record(pku, "pku row 0", "harmless")
    # oriented by harmlessness (b chosen); helpfulness prefers a = this row's rejected
    assert row["chosen"][0]["content"] == "b" and row["preferences"] == {"helpful": -1, "harmless": 1}
    assert objective_rows([row], "helpful")[0]["chosen"][0]["content"] == "a"


def test_each_objective_reward_is_logged_under_its_name(tmp_path):
    from w2s_trl.label import label_with_source
    from w2s_trl.probe import flat_probe

    rows = attach_preferences([pair(0, "harmless", "refuse", "comply"), pair(1, "helpful", "comply", "refuse")])[:1]
    spec = MultiObjectiveSpec(objectives={"harmless": {"reward": {"type": "gold"}}, "helpful": {"reward": {"type": "gold"}}})
    source = MultiObjectiveSource(spec, {"harmless": Fixed({"refuse": 2.0, "comply": -1.0}),
                                         "helpful": build_reward_source(GoldSpec(objective="helpful"))})  # fmt: skip
    record = label_with_source(source, rows, tmp_path, None)
    flat = flat_probe({"variants": [], "labels": {"v": {"objectives": record["objectives"]}}})
    assert flat["v/label/reward/harmless/mean_chosen"] == 2.0 and flat["v/label/reward/harmless/mean_rejected"] == -1.0
    assert flat["v/label/reward/helpful/mean_chosen"] == -0.5 and flat["v/label/reward/helpful/agrees_with_gt"] == 0.0
