"""Preference-pair selection (croco_pipeline.core.pairs.rule): hand-worked pools, then random pools
checked against a plain-Python implementation of the rule written out below."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from croco_pipeline.core.pairs.rule import (
    PAIR_SCHEMA,
    SCORED_COLUMNS,
    SFT_SCHEMA,
    UNPAIRED_SCHEMA,
    NonFiniteRewardError,
    PairingConfig,
    best_of_n,
    build_pairs,
    pairs_and_best_of_n,
)

CROSS = PairingConfig(scope="cross-language")


def scored(*pools: tuple[str, str, list[float | None]], extra: dict | None = None) -> pl.DataFrame:
    """Rows for pools given as (prompt_id, language, rewards); sample_idx = position in the list.

    Texts name their sample, so a test can see which one was picked: prompt "<pid>/<lang> prompt",
    response "<pid>/<lang>/<sample_idx>".
    """
    rows = [
        {
            "prompt_id": pid,
            "language": lang,
            "sample_idx": idx,
            "prompt": f"{pid}/{lang} prompt",
            "response": f"{pid}/{lang}/{idx}",
            "reward": reward,
        }
        for pid, lang, rewards in pools
        for idx, reward in enumerate(rewards)
    ]
    frame = pl.DataFrame(
        rows,
        schema=SCORED_COLUMNS,
    )
    return frame.with_columns(**{k: pl.lit(v) for k, v in (extra or {}).items()})


def only_pair(result) -> dict:
    assert result.pairs.height == 1, result.pairs
    return result.pairs.row(0, named=True)


# ---------------------------------------------------------------------------------------------------
# Chosen, rejected and ties


def test_chosen_is_the_highest_reward_and_the_earliest_sample_on_a_tie():
    # samples 1 and 3 share the top reward; rows arrive in shuffled order
    frame = scored(("p", "da", [0.0, 5.0, 1.0, 5.0, 2.0])).sample(fraction=1.0, shuffle=True, seed=1)
    pair = only_pair(build_pairs(frame))
    assert (pair["chosen"], pair["chosen_score"], pair["chosen_sample_idx"]) == ("p/da/1", 5.0, 1)


def test_rejected_is_the_earliest_of_equally_close_samples():
    # q1 of [3, 1, 5] (sorted 1, 3, 5; virtual index 0.5) is 2.0: samples 0 (3.0) and 1 (1.0) are both 1.0 away
    pair = only_pair(build_pairs(scored(("p", "da", [3.0, 1.0, 5.0])), PairingConfig(target="q1")))
    assert pair["target_value"] == 2.0
    assert (pair["rejected_sample_idx"], pair["rejected_score"], pair["rejected"]) == (0, 3.0, "p/da/0")
    # the same rewards in the other order: now sample 0 holds 1.0 and is the earliest
    pair = only_pair(build_pairs(scored(("p", "da", [1.0, 3.0, 5.0])), PairingConfig(target="q1")))
    assert pair["rejected_sample_idx"] == 0 and pair["rejected_score"] == 1.0


def test_rejected_among_duplicates_is_the_earliest():
    # min target; the minimum 1.0 occurs at samples 2 and 4
    pair = only_pair(build_pairs(scored(("p", "da", [3.0, 9.0, 1.0, 3.0, 1.0])), PairingConfig(target="min")))
    assert pair["rejected_sample_idx"] == 2


def test_rejected_is_strictly_below_the_best_even_when_a_tied_best_is_closer():
    # target min = 0; the second 4.0 ties the best, so it may not be rejected although nothing else is closer
    pair = only_pair(build_pairs(scored(("p", "da", [4.0, 4.0, 0.0])), PairingConfig(target="min")))
    assert (pair["chosen_sample_idx"], pair["rejected_sample_idx"]) == (0, 2)


# ---------------------------------------------------------------------------------------------------
# The three targets, worked out by hand


def test_targets_on_a_pool_with_mean_5_and_std_2():
    # [2, 4, 4, 4, 5, 5, 7, 9]: mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32, /8 = 4, so std 2
    #   mean_minus_2sigma: 5 - 4 = 1            -> closest below 9 is 2 (sample 0)
    #   q1: index 7 * 0.25 = 1.75, sorted[1] = sorted[2] = 4 -> 4.0 -> the first 4 (sample 1)
    #   min: 2                                   -> sample 0
    frame = scored(("p", "da", [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]))
    expected = {"mean_minus_2sigma": (1.0, 0), "q1": (4.0, 1), "min": (2.0, 0)}
    for target, (value, rejected) in expected.items():
        pair = only_pair(build_pairs(frame, PairingConfig(target=target)))
        assert pair["target"] == target
        assert pair["target_value"] == pytest.approx(value, abs=1e-12)
        assert pair["rejected_sample_idx"] == rejected
        assert (pair["pool_mean"], pair["pool_std"], pair["pool_size"]) == (5.0, 2.0, 8)
        assert pair["chosen_sample_idx"] == 7


def test_mean_minus_2sigma_picks_a_typical_bad_sample_not_the_outlier():
    # one -10, 23 zeros, one 1 (n 25): mean -9/25 = -0.36, E[x²] = 101/25 = 4.04, var = 4.04 - 0.1296
    # target = -0.36 - 2·sqrt(3.9104) ≈ -4.315: the zeros (4.315 away) beat -10 (5.685 away); min picks -10
    frame = scored(("p", "da", [-10.0] + [0.0] * 23 + [1.0]))
    pair = only_pair(build_pairs(frame))
    assert pair["target_value"] == pytest.approx(-0.36 - 2 * math.sqrt(3.9104), rel=1e-12)
    assert (pair["rejected_sample_idx"], pair["rejected_score"]) == (1, 0.0)
    assert pair["pool_std"] == pytest.approx(math.sqrt(3.9104), rel=1e-12)
    assert only_pair(build_pairs(frame, PairingConfig(target="min")))["rejected_sample_idx"] == 0
    # q1: index 24 · 0.25 = 6 -> sorted[6] = 0
    q1 = only_pair(build_pairs(frame, PairingConfig(target="q1")))
    assert (q1["target_value"], q1["rejected_sample_idx"]) == (0.0, 1)


def test_q1_interpolates_like_numpy():
    rewards = [0.5, -2.0, 7.25, 3.0, 3.0, 10.0]  # index 5 · 0.25 = 1.25 between sorted 0.5 and 3.0
    pair = only_pair(build_pairs(scored(("p", "da", rewards)), PairingConfig(target="q1")))
    assert pair["target_value"] == float(np.percentile(rewards, 25)) == 0.5 + 0.25 * 2.5


# ---------------------------------------------------------------------------------------------------
# Pools that give no pair


def test_pool_of_two_pairs_best_with_the_other():
    for target in ("mean_minus_2sigma", "q1", "min"):
        pair = only_pair(build_pairs(scored(("p", "da", [1.0, 3.0])), PairingConfig(target=target)))
        assert (pair["chosen_sample_idx"], pair["rejected_sample_idx"], pair["pool_size"]) == (1, 0, 2)
    pair = only_pair(build_pairs(scored(("p", "da", [1.0, 3.0]))))
    assert (pair["pool_mean"], pair["pool_std"], pair["target_value"]) == (2.0, 1.0, 0.0)


def test_pool_of_one_and_all_equal_pool_are_listed_with_their_reason():
    result = build_pairs(scored(("a", "da", [2.0]), ("b", "da", [4.0, 4.0, 4.0]), ("c", "da", [1.0, 2.0])))
    assert result.pairs["prompt_id"].to_list() == ["c"]
    assert result.unpaired.to_dicts() == [
        {"prompt_id": "a", "language": "da", "pool_size": 1, "reason": "pool_too_small"},
        {"prompt_id": "b", "language": "da", "pool_size": 3, "reason": "no_sample_below_best"},
    ]
    assert result.reason_counts() == {"no_sample_below_best": 1, "pool_too_small": 1}
    assert result.unpaired.schema == pl.Schema(UNPAIRED_SCHEMA)


# ---------------------------------------------------------------------------------------------------
# Non-finite rewards


def test_non_finite_rewards_are_dropped_and_counted():
    frame = scored(
        ("a", "da", [1.0, float("nan"), 3.0, float("inf")]),  # pairs on 1.0 and 3.0; inf must not be "best"
        ("b", "da", [float("nan"), None]),  # loses every row
        ("c", "da", [2.0, float("-inf")]),  # one left: too small
    )
    result = build_pairs(frame)
    assert result.dropped_non_finite == 5
    pair = only_pair(result)
    assert (pair["prompt_id"], pair["chosen_sample_idx"], pair["rejected_sample_idx"], pair["pool_size"]) == (
        "a",
        2,
        0,
        2,
    )
    assert result.unpaired.to_dicts() == [
        {"prompt_id": "b", "language": "da", "pool_size": 0, "reason": "non_finite_scores"},
        {"prompt_id": "c", "language": "da", "pool_size": 1, "reason": "pool_too_small"},
    ]


def test_non_finite_fail_names_the_rows():
    frame = scored(("a", "da", [1.0, float("nan"), 3.0]), ("b", "nl", [float("inf"), 2.0]))
    with pytest.raises(NonFiniteRewardError) as caught:
        build_pairs(frame, PairingConfig(non_finite="fail"))
    message = str(caught.value)
    assert "2 scored row(s)" in message
    assert "('a', 'da', 1)" in message and "('b', 'nl', 0)" in message
    assert isinstance(caught.value, ValueError)


def test_non_finite_fail_lists_the_first_ten_and_counts_the_rest():
    frame = scored(("a", "da", [float("nan")] * 13 + [1.0]))
    with pytest.raises(NonFiniteRewardError, match=r"13 scored row.*\('a', 'da', 9\) and 3 more"):
        build_pairs(frame, PairingConfig(non_finite="fail"))


# ---------------------------------------------------------------------------------------------------
# Cross-language pools


def test_cross_language_pool_spans_languages_and_breaks_ties_by_language_order():
    frame = scored(("p", "da", [1.0, 5.0]), ("p", "nl", [5.0, 1.0]), ("p", "en", [0.0, 9.0]))
    # en excluded: only da and nl are configured. Best 5.0 in da#1 and nl#0; rejected 1.0 in da#0 and nl#1.
    da_first = only_pair(build_pairs(frame, PairingConfig(scope="cross-language", languages=("da", "nl"))))
    assert (da_first["chosen_language"], da_first["chosen_sample_idx"]) == ("da", 1)
    assert (da_first["rejected_language"], da_first["rejected_sample_idx"]) == ("da", 0)
    assert da_first["pool_size"] == 4
    nl_first = only_pair(build_pairs(frame, PairingConfig(scope="cross-language", languages=("nl", "da"))))
    assert (nl_first["chosen_language"], nl_first["chosen_sample_idx"]) == ("nl", 0)
    assert (nl_first["rejected_language"], nl_first["rejected_sample_idx"]) == ("nl", 1)
    # no list: all languages, sorted (da, en, nl): en#1 = 9.0 is now the best
    everything = only_pair(build_pairs(frame, CROSS))
    assert (everything["chosen_language"], everything["chosen_score"], everything["pool_size"]) == ("en", 9.0, 6)


def test_cross_language_prompt_source_chosen_and_rejected():
    frame = scored(("p", "da", [1.0, 2.0]), ("p", "nl", [7.0, 3.0]))  # best nl#0, min-target rejected da#0
    config = dict(scope="cross-language", target="min")
    chosen = only_pair(build_pairs(frame, PairingConfig(**config)))
    assert (chosen["prompt_language"], chosen["language"], chosen["prompt"]) == ("nl", "nl", "p/nl prompt")
    assert (chosen["chosen"], chosen["rejected"]) == ("p/nl/0", "p/da/0")
    rejected = only_pair(build_pairs(frame, PairingConfig(**config, prompt_source="rejected")))
    assert (rejected["prompt_language"], rejected["language"], rejected["prompt"]) == ("da", "da", "p/da prompt")
    assert (rejected["chosen"], rejected["rejected"]) == ("p/nl/0", "p/da/0")


def test_cross_language_random_prompt_source_is_seeded_and_independent_of_row_order():
    pools = []
    for i in range(60):  # chosen always in nl, rejected always in da
        pools += [(f"p{i:02d}", "da", [1.0, 2.0]), (f"p{i:02d}", "nl", [7.0, 3.0])]
    frame = scored(*pools)
    config = PairingConfig(scope="cross-language", target="min", prompt_source="random", seed=7)
    first = build_pairs(frame, config).pairs
    again = build_pairs(frame.sample(fraction=1.0, shuffle=True, seed=3), config).pairs
    assert first.equals(again)
    languages = first["prompt_language"].to_list()
    assert set(languages) == {"da", "nl"}  # 60 fair coin flips: both sides come up
    for row in first.iter_rows(named=True):
        assert row["prompt"] == f"{row['prompt_id']}/{row['prompt_language']} prompt"
        assert row["language"] == row["prompt_language"]
    other_seed = build_pairs(frame, PairingConfig(**{**config.__dict__, "seed": 8})).pairs
    assert other_seed["prompt_language"].to_list() != languages


PAPER_GROUP = ("da", "nl", "en", "fr", "de", "it", "es")  # the paper's high-resource group, in its order


def test_the_paper_group_order_breaks_ties_not_the_alphabet():
    frame = scored(("p", "fr", [8.0, 1.0]), ("p", "en", [8.0, 1.0]), ("p", "nl", [1.0, 8.0]), ("p", "mt", [9.0, 0.0]))
    pair = only_pair(build_pairs(frame, PairingConfig(scope="cross-language", languages=PAPER_GROUP)))
    # nl comes before en and fr in the paper's order (alphabetically en would win); mt is another run's
    assert (pair["chosen_language"], pair["chosen_sample_idx"], pair["pool_size"]) == ("nl", 1, 6)
    assert (pair["rejected_language"], pair["rejected_sample_idx"]) == ("nl", 0)


def test_random_prompt_source_draws_among_all_the_groups_languages():
    pools = []
    for i in range(90):  # chosen always in nl, rejected always in da; en only shows the prompt
        pools += [(f"p{i:02d}", "da", [1.0, 2.0]), (f"p{i:02d}", "nl", [9.0, 3.0]), (f"p{i:02d}", "en", [5.0, 5.0])]
    pools.append(("solo", "da", [1.0, 2.0]))  # a prompt that only da has can only be shown in da
    frame = scored(*pools)
    config = PairingConfig(scope="cross-language", target="min", prompt_source="random", seed=3, languages=PAPER_GROUP)
    pairs = build_pairs(frame, config).pairs
    counts = dict(pairs.group_by("prompt_language").len().iter_rows())
    assert set(counts) == {"da", "nl", "en"} and min(counts["da"], counts["nl"], counts["en"]) >= 15
    for row in pairs.iter_rows(named=True):
        assert row["prompt"] == f"{row['prompt_id']}/{row['prompt_language']} prompt"
        expected = ("da", "da") if row["prompt_id"] == "solo" else ("nl", "da")
        assert (row["chosen_language"], row["rejected_language"]) == expected
    assert pairs.filter(pl.col("prompt_id") == "solo")["prompt_language"].to_list() == ["da"]
    again = build_pairs(frame.sample(fraction=1.0, shuffle=True, seed=1), config).pairs
    assert again.equals(pairs)  # one seeded draw per prompt, whatever the row order


def test_cross_language_unpaired_has_no_language():
    result = build_pairs(scored(("p", "da", [2.0]), ("p", "nl", [2.0]), ("q", "da", [1.0])), CROSS)
    assert result.unpaired.to_dicts() == [
        {"prompt_id": "p", "language": None, "pool_size": 2, "reason": "no_sample_below_best"},
        {"prompt_id": "q", "language": None, "pool_size": 1, "reason": "pool_too_small"},
    ]


def test_language_list_filters_the_in_language_scope_too():
    frame = scored(("p", "da", [1.0, 2.0]), ("p", "en", [1.0, float("nan")]))
    result = build_pairs(frame, PairingConfig(languages=("da",)))
    assert result.pairs["language"].to_list() == ["da"]
    assert result.unpaired.height == 0 and result.dropped_non_finite == 0  # en rows are out of scope


# ---------------------------------------------------------------------------------------------------
# Output shape, best-of-N, input checks


def test_output_columns_types_and_order():
    frame = scored(("b", "nl", [1.0, 2.0]), ("a", "nl", [1.0, 2.0]), ("b", "da", [1.0, 2.0]))
    pairs = build_pairs(frame.lazy()).pairs  # a LazyFrame works too
    assert pairs.schema == pl.Schema(PAIR_SCHEMA)
    assert list(pairs.columns) == list(PAIR_SCHEMA)
    assert pairs.select("prompt_id", "language").rows() == [("a", "nl"), ("b", "da"), ("b", "nl")]
    assert pairs["prompt"].to_list() == ["a/nl prompt", "b/da prompt", "b/nl prompt"]
    assert set(pairs["prompt_language"]) == {"da", "nl"} and pairs["target"].unique().to_list() == [
        "mean_minus_2sigma"
    ]


def test_best_of_n_in_both_scopes():
    frame = scored(("p", "da", [1.0, 4.0]), ("p", "nl", [6.0, 6.0, 0.0]), ("q", "da", [2.0]))
    sft = best_of_n(frame)
    assert sft.schema == pl.Schema(SFT_SCHEMA)
    assert sft.select("prompt_id", "language", "response", "score", "sample_idx", "pool_size").rows() == [
        ("p", "da", "p/da/1", 4.0, 1, 2),
        ("p", "nl", "p/nl/0", 6.0, 0, 3),
        ("q", "da", "q/da/0", 2.0, 0, 1),  # a pool of one still has a best sample
    ]
    cross = best_of_n(frame, CROSS)
    assert cross.select("prompt_id", "language", "prompt_language", "prompt", "response", "pool_size").rows() == [
        ("p", "nl", "nl", "p/nl prompt", "p/nl/0", 5),
        ("q", "da", "da", "q/da prompt", "q/da/0", 1),
    ]
    result, together = pairs_and_best_of_n(frame, CROSS)
    assert together.equals(cross) and result.pairs.equals(build_pairs(frame, CROSS).pairs)


def test_missing_columns_are_named_with_the_columns_found():
    frame = scored(("p", "da", [1.0, 2.0])).drop("reward", "prompt").with_columns(score=pl.lit(1.0))
    with pytest.raises(
        ValueError,
        match=r"missing column\(s\) prompt, reward; columns found: prompt_id, "
        r"language, sample_idx, response, score",
    ):
        build_pairs(frame)


def test_extra_columns_are_ignored_and_integer_prompt_ids_become_text():
    frame = scored(("7", "da", [1.0, 2.0]), extra={"model": "m", "reward_model": "rm"})
    frame = frame.with_columns(pl.col("prompt_id").cast(pl.Int32), pl.col("reward").cast(pl.Float32))
    pair = only_pair(build_pairs(frame))
    assert pair["prompt_id"] == "7" and pair["chosen_score"] == 2.0


def test_wrong_column_type_is_reported():
    frame = scored(("p", "da", [1.0, 2.0])).with_columns(pl.col("reward").cast(pl.String))
    with pytest.raises(ValueError, match="column 'reward' has type String; expected a number"):
        build_pairs(frame)


def test_duplicated_samples_are_refused():
    frame = scored(("p", "da", [1.0, 2.0, 3.0]))
    frame = pl.concat([frame, frame.filter(pl.col("sample_idx") == 1)])
    with pytest.raises(ValueError, match=r"1 sample\(s\) appear more than once.*\('p', 'da', 1\)"):
        build_pairs(frame)


def test_missing_ids_are_reported_by_row():
    frame = scored(("p", "da", [1.0, 2.0, 3.0])).with_columns(
        language=pl.when(pl.col("sample_idx") == 2).then(None).otherwise(pl.col("language"))
    )
    with pytest.raises(ValueError, match=r"1 scored row\(s\) lack a prompt_id, language or sample_idx \(rows 3,"):
        build_pairs(frame)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="target='median'"):
        PairingConfig(target="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="languages lists da more than once"):
        PairingConfig(languages=("da", "nl", "da"))
    assert PairingConfig(languages=["da", "nl"]).languages == ("da", "nl")  # type: ignore[arg-type]


def test_empty_input_gives_empty_tables():
    result = build_pairs(scored())
    assert result.pairs.height == 0 and result.pairs.schema == pl.Schema(PAIR_SCHEMA)
    assert result.unpaired.height == 0 and result.reason_counts() == {}
    assert best_of_n(scored()).schema == pl.Schema(SFT_SCHEMA)


# ---------------------------------------------------------------------------------------------------
# Random pools against a plain-Python implementation of the rule

# Rounding: the plain implementation computes mean and std with `statistics` (exact arithmetic), polars in
# float64; the two can differ in the last bit. When two candidates are equally close up to that rounding
# either may be picked, so the comparison accepts any candidate within TOLERANCE of the closest distance,
# provided it is the earliest sample with its reward. q1 and min are computed identically: exact match.
TOLERANCE = 1e-9


def plain_python_pairs(rows: list[dict], config: PairingConfig) -> tuple[dict, dict, int]:
    """The rule, written for clarity.

    Returns ({pool: (chosen row, target, rows below the best in tie-break order, pool size)},
    {pool: (reason, pool size)}, rows dropped); a pool is (prompt_id, language or None).
    """
    languages = list(config.languages) if config.languages else sorted({row["language"] for row in rows})
    rank = {language: i for i, language in enumerate(languages)}
    pools: dict[tuple, list[dict]] = defaultdict(list)
    all_keys: set[tuple] = set()
    dropped = 0
    for row in rows:
        if row["language"] not in rank:
            continue
        key = (row["prompt_id"], row["language"]) if config.scope == "in-language" else (row["prompt_id"], None)
        all_keys.add(key)
        if row["reward"] is None or not math.isfinite(row["reward"]):
            dropped += 1
            continue
        pools[key].append(row)
    pairs, unpaired = {}, {}
    for key in all_keys:
        pool = sorted(pools.get(key, []), key=lambda row: (rank[row["language"]], row["sample_idx"]))
        if not pool:
            unpaired[key] = ("non_finite_scores", 0)
            continue
        if len(pool) < 2:
            unpaired[key] = ("pool_too_small", len(pool))
            continue
        rewards = [row["reward"] for row in pool]
        best = max(rewards)
        chosen = next(row for row in pool if row["reward"] == best)  # pool is in tie-break order
        below = [row for row in pool if row["reward"] < best]
        if not below:
            unpaired[key] = ("no_sample_below_best", len(pool))
            continue
        if config.target == "mean_minus_2sigma":
            target = statistics.mean(rewards) - 2 * statistics.pstdev(rewards)
        elif config.target == "q1":
            target = float(np.percentile(rewards, 25))
        else:
            target = min(rewards)
        pairs[key] = (chosen, target, below, len(pool))
    return pairs, unpaired, dropped


reward_values = st.one_of(
    st.integers(-4, 4).map(float),  # many exact ties and duplicates
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), None]),
)


@st.composite
def random_tables(draw):
    languages = draw(st.lists(st.sampled_from(["da", "nl", "en", "mt"]), min_size=1, max_size=3, unique=True))
    rows = []
    for p in range(draw(st.integers(1, 4))):
        for language in languages:
            rewards = draw(st.lists(reward_values, min_size=0, max_size=9))
            indexes = draw(st.permutations(range(len(rewards))))  # sample_idx not in row order
            rows += [
                {
                    "prompt_id": f"p{p}",
                    "language": language,
                    "sample_idx": idx * 3,
                    "prompt": f"p{p}/{language}",
                    "response": f"p{p}/{language}/{idx * 3}",
                    "reward": reward,
                }
                for idx, reward in zip(indexes, rewards)
            ]
    random.Random(draw(st.integers(0, 2**16))).shuffle(rows)
    scope = draw(st.sampled_from(["in-language", "cross-language"]))
    target = draw(st.sampled_from(["mean_minus_2sigma", "q1", "min"]))
    order = draw(st.one_of(st.none(), st.permutations(languages).map(tuple)))
    source = draw(st.sampled_from(["chosen", "rejected", "random"]))
    return rows, PairingConfig(scope=scope, target=target, languages=order, prompt_source=source)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables())
def test_random_pools_match_the_plain_python_rule(table):
    rows, config = table
    frame = pl.DataFrame(
        rows,
        schema=SCORED_COLUMNS,
    )
    result = build_pairs(frame, config)
    # The same rows in another order give the very same tables, to the last bit: reversed, and sorted
    # in tie-break order (which takes the no-sort path inside build_pairs).
    order = list(config.languages or sorted(set(frame["language"])))
    in_order = frame.sort(
        pl.col("prompt_id"),
        pl.col("language").replace_strict(order, range(len(order)), default=len(order)),
        "sample_idx",
    )
    for other in (frame.reverse(), in_order):
        again = build_pairs(other, config)
        assert again.pairs.equals(result.pairs) and again.unpaired.equals(result.unpaired)
    expected_pairs, expected_unpaired, dropped = plain_python_pairs(rows, config)

    assert result.dropped_non_finite == dropped
    assert {(r["prompt_id"], r["language"]): (r["reason"], r["pool_size"]) for r in result.unpaired.to_dicts()} == (
        expected_unpaired
    )
    got = {
        (r["prompt_id"], r["language"] if config.scope == "in-language" else None): r for r in result.pairs.to_dicts()
    }
    assert set(got) == set(expected_pairs)
    for key, (chosen, target, below, size) in expected_pairs.items():
        pair = got[key]
        assert (pair["chosen_language"], pair["chosen_sample_idx"]) == (chosen["language"], chosen["sample_idx"])
        assert pair["chosen_score"] == chosen["reward"]
        assert pair["target_value"] == pytest.approx(target, rel=TOLERANCE, abs=TOLERANCE)
        assert pair["pool_size"] == size
        closest = min(abs(r["reward"] - target) for r in below)
        slack = TOLERANCE * (1 + abs(target)) if config.target == "mean_minus_2sigma" else 0.0
        acceptable = {r["reward"] for r in below if abs(r["reward"] - target) <= closest + slack}
        assert pair["rejected_score"] in acceptable
        earliest = next(r for r in below if r["reward"] == pair["rejected_score"])  # below is in tie-break order
        assert (pair["rejected_language"], pair["rejected_sample_idx"]) == (
            earliest["language"],
            earliest["sample_idx"],
        )
        assert pair["rejected"] == earliest["response"] and pair["chosen"] == chosen["response"]
        if config.scope == "in-language" or config.prompt_source == "chosen":
            assert pair["prompt_language"] == chosen["language"]
        elif config.prompt_source == "rejected":
            assert pair["prompt_language"] == earliest["language"]
        else:  # any configured language that has rows of this prompt
            assert pair["prompt_language"] in {r["language"] for r in rows if r["prompt_id"] == key[0]} & set(order)
        assert (pair["language"], pair["prompt"]) == (pair["prompt_language"], f"{key[0]}/{pair['prompt_language']}")


def test_texts_lose_surrounding_whitespace_as_in_the_authors_pairing_script() -> None:
    frame = scored(("p1", "da", [3.0, 1.0, 2.0])).with_columns(
        prompt=pl.lit("\n  p1/da prompt \n"), response=pl.format(" {}\n", pl.col("response"))
    )
    pairs, sft = pairs_and_best_of_n(frame, PairingConfig())
    pair = pairs.pairs.row(0, named=True)
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == ("p1/da prompt", "p1/da/0", "p1/da/1")
    assert (sft["prompt"][0], sft["response"][0]) == ("p1/da prompt", "p1/da/0")
    assert pairs.pairs["chosen_score"][0] == 3.0  # scores are those of the texts as generated
