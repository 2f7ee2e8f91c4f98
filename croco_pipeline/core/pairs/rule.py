"""Preference pairs from scored self-generations (docs/design.md §1.4).

For every *pool* of scored samples of one conceptual prompt:

- **chosen** = the sample with the highest reward;
- **rejected** = among the samples whose reward is *strictly* below chosen's, the one whose reward is
  closest to a target: ``mean_minus_2sigma`` (default; mean − 2·std, population std, ddof 0), ``q1``
  (25th percentile, numpy's default "linear" interpolation) or ``min``.

Ties go to the *earliest* sample: first by the order of the configured language list, then by
``sample_idx`` ascending. A pool is one (prompt_id, language) in the ``in-language`` scope, or one
prompt_id over all configured languages in the ``cross-language`` scope (then chosen and rejected may
be in different languages, and the prompt is shown in the language ``prompt_source`` picks: the chosen
sample's, the rejected sample's, or, as the paper does with ``random``, any language of the group that
has the prompt, drawn uniformly and reproducibly per prompt).

Pools that give no pair are not silently lost: they are listed with a reason (``pool_too_small``,
``no_sample_below_best``, ``non_finite_scores``), and rows with NaN/±inf/missing rewards are either
dropped and counted or reported as an error.

Everything is polars expressions over whole tables (no Python loop over pools), in two passes over the
input: a narrow pass (ids and rewards only) picks the chosen/rejected sample of every pool, then a second
pass fetches prompt and response texts of just those samples. The texts of the other samples are never
held in memory when the input is a lazy scan, which is what lets 10M-sample files fit in a few GiB.
Pure functions: no file I/O here (``croco_pipeline.core.io.tables`` reads and writes the files) and no Dagster.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

import polars as pl

Target = Literal["mean_minus_2sigma", "q1", "min"]
Scope = Literal["in-language", "cross-language"]
PromptSource = Literal["chosen", "rejected", "random"]
NonFinitePolicy = Literal["drop", "fail"]

TARGETS: tuple[str, ...] = get_args(Target)
SCOPES: tuple[str, ...] = get_args(Scope)
PROMPT_SOURCES: tuple[str, ...] = get_args(PromptSource)
NON_FINITE_POLICIES: tuple[str, ...] = get_args(NonFinitePolicy)

# Why a pool gave no pair (the ``reason`` column of the unpaired table).
POOL_TOO_SMALL = "pool_too_small"
NO_SAMPLE_BELOW_BEST = "no_sample_below_best"
NON_FINITE_SCORES = "non_finite_scores"

# The columns a scored table must have, and the types they are read as. Extra columns are ignored.
SCORED_COLUMNS: dict[str, pl.DataType] = {
    "prompt_id": pl.String(),
    "language": pl.String(),
    "sample_idx": pl.Int64(),
    "prompt": pl.String(),
    "response": pl.String(),
    "reward": pl.Float64(),
}

PAIR_SCHEMA: dict[str, pl.DataType] = {
    "prompt_id": pl.String(),
    "prompt": pl.String(),
    "prompt_language": pl.String(),
    "chosen": pl.String(),
    "rejected": pl.String(),
    "chosen_score": pl.Float64(),
    "rejected_score": pl.Float64(),
    "chosen_language": pl.String(),
    "rejected_language": pl.String(),
    "chosen_sample_idx": pl.Int64(),
    "rejected_sample_idx": pl.Int64(),
    "pool_size": pl.Int64(),
    "target": pl.String(),
    "target_value": pl.Float64(),
    "pool_mean": pl.Float64(),
    "pool_std": pl.Float64(),
    "language": pl.String(),
}
UNPAIRED_SCHEMA: dict[str, pl.DataType] = {
    "prompt_id": pl.String(),
    "language": pl.String(),  # null in the cross-language scope (the pool spans languages)
    "pool_size": pl.Int64(),  # finite-reward samples in the pool
    "reason": pl.String(),
}
SFT_SCHEMA: dict[str, pl.DataType] = {
    "prompt_id": pl.String(),
    "language": pl.String(),
    "prompt": pl.String(),
    "prompt_language": pl.String(),
    "response": pl.String(),
    "score": pl.Float64(),
    "sample_idx": pl.Int64(),
    "pool_size": pl.Int64(),
}

_KEYS = ["prompt_id", "language", "sample_idx"]
_KEY_TYPES = {name: SCORED_COLUMNS[name] for name in _KEYS}
_MAX_ROWS_IN_MESSAGE = 10


class NonFiniteRewardError(ValueError):
    """Some rewards are NaN, ±inf or missing and the configuration says ``non_finite="fail"``."""


@dataclass(frozen=True)
class PairingConfig:
    """How pools are formed and which sample is rejected (see the module docstring).

    ``languages``: the languages taken into account, in tie-break order; rows of other languages are
    left out (in both scopes). ``None`` means every language in the data, sorted by code.
    ``prompt_source`` and ``seed`` matter only in the cross-language scope: ``random`` shows the prompt
    in one of the languages that have samples of it (any of them, not only the chosen or rejected
    sample's), drawn uniformly by a hash of (seed, prompt_id), so it is reproducible and independent of
    row order.
    """

    scope: Scope = "in-language"
    target: Target = "mean_minus_2sigma"
    prompt_source: PromptSource = "chosen"
    languages: tuple[str, ...] | None = None
    seed: int = 0
    non_finite: NonFinitePolicy = "drop"

    def __post_init__(self) -> None:
        for setting, value, allowed in (
            ("scope", self.scope, SCOPES),
            ("target", self.target, TARGETS),
            ("prompt_source", self.prompt_source, PROMPT_SOURCES),
            ("non_finite", self.non_finite, NON_FINITE_POLICIES),
        ):
            if value not in allowed:
                raise ValueError(f"pairing setting {setting}={value!r} is not one of {', '.join(allowed)}")
        if self.languages is not None:
            if isinstance(self.languages, str):
                raise ValueError(
                    f"pairing setting languages={self.languages!r} must be a sequence of codes such as "
                    "('da', 'nl'), not one string"
                )
            languages = tuple(self.languages)  # accept lists; store a tuple so the config stays hashable
            if not languages:
                raise ValueError("pairing setting languages=() is empty; give at least one code or None for all")
            repeated = sorted({code for code in languages if languages.count(code) > 1})
            if repeated:
                raise ValueError(f"pairing setting languages lists {', '.join(repeated)} more than once")
            object.__setattr__(self, "languages", languages)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"pairing setting seed={self.seed!r} must be an integer")


@dataclass
class PairingResult:
    """The pairs, the pools that gave none (with why), and how many non-finite rows were dropped."""

    pairs: pl.DataFrame
    unpaired: pl.DataFrame
    dropped_non_finite: int

    def reason_counts(self) -> dict[str, int]:
        """Number of unpaired pools per reason, e.g. ``{"pool_too_small": 3}`` (sorted by reason)."""
        counts = self.unpaired.group_by("reason").len().sort("reason")
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list()))


def build_pairs(scored: pl.DataFrame | pl.LazyFrame, config: PairingConfig = PairingConfig()) -> PairingResult:
    """One preference pair per pool of ``scored`` (columns: see ``SCORED_COLUMNS``).

    Returns the pairs (columns of ``PAIR_SCHEMA``, sorted by prompt_id then language), the unpaired
    pools (``UNPAIRED_SCHEMA``) and the number of rows dropped for non-finite rewards.
    Raises ``ValueError`` for a table that does not fit (missing columns, wrong types, missing ids,
    duplicated samples) and ``NonFiniteRewardError`` with ``non_finite="fail"``.
    """
    source = _checked(scored)
    pools, dropped = _select(source, config)
    paired = _paired(pools)
    rows = _fetch_rows(source, *(_sample_keys(paired, side) for side in _SIDES))
    return _pairs(pools, rows, dropped, config)


def best_of_n(scored: pl.DataFrame | pl.LazyFrame, config: PairingConfig = PairingConfig()) -> pl.DataFrame:
    """The best sample (= chosen) of every pool with at least one finite reward: the SFT baseline data.

    Pools of a single sample are included (their only sample is their best); the target and
    ``prompt_source`` play no part. In the cross-language scope ``language`` and ``prompt_language``
    are the best sample's language and the prompt is taken from that language's rows.
    Columns: ``SFT_SCHEMA``, sorted by prompt_id then language.
    """
    source = _checked(scored)
    pools, _ = _select(source, config)
    return _best_of_n(pools, _fetch_rows(source, _sample_keys(pools, "chosen")))


def pairs_and_best_of_n(
    scored: pl.DataFrame | pl.LazyFrame, config: PairingConfig = PairingConfig()
) -> tuple[PairingResult, pl.DataFrame]:
    """``build_pairs`` and ``best_of_n`` together, selecting samples and reading texts once."""
    source = _checked(scored)
    pools, dropped = _select(source, config)
    # Every pool's best sample (the SFT record and, where there is a pair, its chosen) plus rejecteds.
    rows = _fetch_rows(source, *(_sample_keys(pools, side) for side in _SIDES))
    return _pairs(pools, rows, dropped, config), _best_of_n(pools, rows)


def _paired(pools: pl.DataFrame) -> pl.DataFrame:
    return pools.filter(pl.col("reason").is_null())


# The samples whose rows a pair needs: chosen, rejected, and (prompt_source="random") one that shows the
# prompt in the drawn language.
_SIDES = ("chosen", "rejected", "prompt")


def _sample_keys(pools: pl.DataFrame, side: Literal["chosen", "rejected", "prompt"]) -> pl.DataFrame:
    """(prompt_id, language, sample_idx, _row) of each pool's chosen, rejected or prompt sample, where it
    has one (pools without a drawn prompt language have no prompt sample)."""
    if f"_{side}_row" not in pools.columns:
        return pl.DataFrame(schema={**_KEY_TYPES, "_row": pl.get_index_type()})
    return pools.filter(pl.col(f"{side}_sample_idx").is_not_null()).select(
        "prompt_id", language=f"{side}_language", sample_idx=f"{side}_sample_idx", _row=f"_{side}_row"
    )


def _pairs(pools: pl.DataFrame, rows: pl.DataFrame, dropped: int, config: PairingConfig) -> PairingResult:
    """Pair records for the pools that have a rejected sample; texts come from the fetched ``rows``."""
    paired = _paired(pools)
    chosen_rows = rows.select(
        "prompt_id",
        chosen_language="language",
        chosen_sample_idx="sample_idx",
        _chosen_prompt="prompt",
        chosen="response",
    )
    rejected_rows = rows.select(
        "prompt_id",
        rejected_language="language",
        rejected_sample_idx="sample_idx",
        _rejected_prompt="prompt",
        rejected="response",
        rejected_score="reward",
    )
    pairs = paired.join(chosen_rows, on=["prompt_id", "chosen_language", "chosen_sample_idx"], how="left").join(
        rejected_rows, on=["prompt_id", "rejected_language", "rejected_sample_idx"], how="left"
    )

    if config.scope == "in-language":
        prompt_language = pl.col("language")
    elif config.prompt_source == "chosen":
        prompt_language = pl.col("chosen_language")
    elif config.prompt_source == "rejected":
        prompt_language = pl.col("rejected_language")
    else:  # random: the language drawn in _select, and the prompt from a sample in that language
        pairs = pairs.join(
            rows.select(
                "prompt_id", _random_prompt="prompt", prompt_language="language", prompt_sample_idx="sample_idx"
            ),
            on=["prompt_id", "prompt_language", "prompt_sample_idx"],
            how="left",
        )
        prompt_language = pl.col("prompt_language")
    pairs = pairs.with_columns(prompt_language=prompt_language).with_columns(
        # The prompt as shown in prompt_language, taken from a row of that language.
        prompt=pl.when(pl.col("prompt_language") == pl.col("chosen_language"))
        .then(pl.col("_chosen_prompt"))
        .when(pl.col("prompt_language") == pl.col("rejected_language"))
        .then(pl.col("_rejected_prompt"))
        .otherwise(pl.col("_random_prompt") if "_random_prompt" in pairs.columns else None),
        chosen_score=pl.col("best"),
        target=pl.lit(config.target),
        language=pl.col("prompt_language"),
    )
    # Texts without surrounding whitespace, as the authors' pairing script writes them (scores are unchanged).
    pairs = pairs.with_columns(pl.col("prompt", "chosen", "rejected").str.strip_chars())
    pairs = pairs.select(list(PAIR_SCHEMA)).cast(PAIR_SCHEMA).sort("prompt_id", "language")

    unpaired = (
        pools.filter(pl.col("reason").is_not_null())
        .select(list(UNPAIRED_SCHEMA))
        .cast(UNPAIRED_SCHEMA)
        .sort("prompt_id", "language")
    )
    return PairingResult(pairs=pairs, unpaired=unpaired, dropped_non_finite=dropped)


def _best_of_n(pools: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """SFT records: the chosen sample of every pool with at least one finite reward."""
    best = pools.filter(pl.col("pool_size") > 0)
    sft = best.select("prompt_id", "chosen_language", "chosen_sample_idx", "pool_size", score="best").join(
        rows.select("prompt_id", "prompt", "response", chosen_language="language", chosen_sample_idx="sample_idx"),
        on=["prompt_id", "chosen_language", "chosen_sample_idx"],
        how="left",
    )
    sft = sft.with_columns(
        language=pl.col("chosen_language"),
        prompt_language=pl.col("chosen_language"),
        sample_idx=pl.col("chosen_sample_idx"),
    )
    sft = sft.with_columns(pl.col("prompt", "response").str.strip_chars())  # as the pairs (see _pairs)
    return sft.select(list(SFT_SCHEMA)).cast(SFT_SCHEMA).sort("prompt_id", "language")


# --------------------------------------------------------------------------------------------------
# Input checks


def _checked(scored: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """``scored`` with just the required columns, typed, after checking they exist and fit.

    Stays what it was: a DataFrame is already in memory (its texts are then taken by position), a
    LazyFrame is read column by column as needed.
    """
    if not isinstance(scored, (pl.DataFrame, pl.LazyFrame)):
        raise TypeError(f"scored must be a polars DataFrame or LazyFrame, not {type(scored).__name__}")
    schema = scored.collect_schema()
    missing = [name for name in SCORED_COLUMNS if name not in schema]
    if missing:
        raise ValueError(
            f"scored table is missing column(s) {', '.join(missing)}; columns found: "
            f"{', '.join(schema) or '(none)'}. A scored table needs {', '.join(SCORED_COLUMNS)}."
        )
    for name in SCORED_COLUMNS:
        problem = _type_problem(name, schema[name])
        if problem:
            raise ValueError(f"scored table column {name!r} has type {schema[name]}; {problem}")
    return scored.select(pl.col(name).cast(dtype) for name, dtype in SCORED_COLUMNS.items())


def _type_problem(name: str, dtype: pl.DataType) -> str | None:
    """Why a column of this type cannot be read as ``SCORED_COLUMNS[name]``, or None if it can."""
    if dtype == pl.Null:  # an all-null column (e.g. from JSON); nulls are reported later, by row
        return None
    textual = dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))
    if name == "prompt_id" and (textual or dtype.is_integer()):
        return None
    if name in ("language", "prompt", "response") and textual:
        return None
    if name == "sample_idx" and dtype.is_integer():
        return None
    if name == "reward" and dtype.is_numeric():
        return None
    expected = {
        "prompt_id": "expected text or an integer",
        "language": "expected text (an ISO 639-1 code)",
        "prompt": "expected text",
        "response": "expected text",
        "sample_idx": "expected an integer",
        "reward": "expected a number",
    }
    return expected[name]


def _describe_rows(rows: pl.DataFrame, total: int) -> str:
    """``(prompt_id, language, sample_idx)`` of the first rows, plus how many more there are."""
    shown = ", ".join(
        f"({pid!r}, {lang!r}, {idx})" for pid, lang, idx in rows.head(_MAX_ROWS_IN_MESSAGE).select(_KEYS).iter_rows()
    )
    more = total - min(total, _MAX_ROWS_IN_MESSAGE)
    return shown + (f" and {more} more" if more else "")


# --------------------------------------------------------------------------------------------------
# Selection: which sample is chosen and which rejected, per pool (ids and rewards only)


def _select(source: pl.DataFrame | pl.LazyFrame, config: PairingConfig) -> tuple[pl.DataFrame, int]:
    """One row per pool: prompt_id, language, pool_size, stats, chosen/rejected ids and a reason.

    ``reason`` is null for pools that give a pair. ``language`` is null in the cross-language scope.
    ``_chosen_row`` / ``_rejected_row`` are the picked samples' positions in ``source`` (0-based).
    Also returns the number of rows dropped for non-finite rewards.

    Written for speed on millions of rows: every step over all samples is a single cheap polars
    operation (a filter, a gather, a group-by on one integer); joins run on per-pool tables only.
    """
    narrow, languages = _ids_and_rewards(source, config)
    if narrow.height == 0:
        return _empty_pools(), 0
    order = _TieBreakOrder.of(narrow, languages)
    pool_keys = ["prompt_id", "language"] if config.scope == "in-language" else ["prompt_id"]
    narrow = _number_pools_in_order(narrow.with_columns(_ord=order.rank()), pool_keys)
    _check_unique_samples(narrow)
    narrow, dropped = _without_non_finite(narrow, config.non_finite)
    stats = _pool_statistics(narrow, config)
    pools = _pick_samples(narrow, stats, order).with_columns(reason=_NO_PAIR_REASON)
    if config.scope == "cross-language" and config.prompt_source == "random":
        pools = _draw_prompt_language(pools, narrow, config.seed, order)
    return pools.drop("_pool", "_q1", "_min", "_chosen_ord", "_rejected_ord"), dropped


def _ids_and_rewards(source: pl.DataFrame | pl.LazyFrame, config: PairingConfig) -> tuple[pl.DataFrame, list[str]]:
    """The ids and reward of every sample of the configured languages, with its row number (``_row``),
    and those languages in tie-break order."""
    narrow = source.lazy().select(*_KEYS, "reward").with_row_index("_row").collect()
    _check_ids_present(narrow)
    if config.languages is None:
        return narrow, sorted(narrow["language"].unique().to_list())
    languages = list(config.languages)
    return narrow.filter(pl.col("language").is_in(languages)), languages


@dataclass(frozen=True)
class _TieBreakOrder:
    """The tie-break order (language rank, then sample_idx) as one integer per sample, ``_ord``, so
    "the earliest sample" is simply the smallest ``_ord``. It decodes back with // and %."""

    languages: list[str]
    low: int  # the smallest sample_idx
    span: int  # sample_idx values per language

    @classmethod
    def of(cls, narrow: pl.DataFrame, languages: list[str]) -> _TieBreakOrder:
        low, high = narrow["sample_idx"].min(), narrow["sample_idx"].max()
        span = high - low + 1
        if len(languages) * span >= 2**62:
            raise ValueError(
                f"sample_idx values range from {low} to {high}, too wide to order samples by; "
                "number the samples of a prompt 0, 1, 2, …"
            )
        return cls(languages, low, span)

    def rank(self) -> pl.Expr:
        """``_ord`` of each row."""
        lang_rank = (
            pl.lit(0, pl.Int64)  # one language (the usual in-language file): nothing to look up
            if len(self.languages) == 1
            else pl.col("language").replace_strict(
                self.languages, list(range(len(self.languages))), return_dtype=pl.Int64
            )
        )
        return lang_rank * self.span + (pl.col("sample_idx") - self.low)

    def language_of(self, ord_column: str) -> pl.Expr:
        return (pl.col(ord_column) // self.span).replace_strict(
            list(range(len(self.languages))), self.languages, return_dtype=pl.String, default=None
        )

    def sample_of(self, ord_column: str) -> pl.Expr:
        return pl.col(ord_column) % self.span + self.low


def _without_non_finite(narrow: pl.DataFrame, policy: NonFinitePolicy) -> tuple[pl.DataFrame, int]:
    """``narrow`` with NaN/±inf/missing rewards made null (``drop``), and how many there were; or a
    ``NonFiniteRewardError`` naming them (``fail``)."""
    reward = pl.col("reward")
    finite = reward.is_finite().fill_null(False)
    non_finite = narrow.filter(~finite)
    if non_finite.height == 0:
        return narrow, 0
    if policy == "fail":
        raise NonFiniteRewardError(
            f"{non_finite.height} scored row(s) have a NaN, infinite or missing reward: "
            f"{_describe_rows(non_finite.sort('_row'), non_finite.height)} "
            "(prompt_id, language, sample_idx). Re-score them, or pass non_finite='drop' "
            "(croco pairs --non-finite drop) to leave them out and count them."
        )
    # Dropped by turning them into nulls, which every statistic and comparison below skips; the
    # rows stay, so a pool of only non-finite rewards is still listed (with pool_size 0).
    return narrow.with_columns(reward=pl.when(finite).then(reward)), non_finite.height


def _pool_statistics(narrow: pl.DataFrame, config: PairingConfig) -> pl.DataFrame:
    """One row per pool, row i being pool i (``_pool`` counts 0, 1, … and rows are sorted by it): size,
    best reward, mean, population std and the rejected sample's target."""
    reward = pl.col("reward")
    stats = narrow.group_by("_pool", maintain_order=True).agg(
        pl.col("prompt_id").first(),
        language=pl.col("language").first() if config.scope == "in-language" else pl.lit(None, pl.String),
        pool_size=reward.count().cast(pl.Int64),
        best=reward.max(),
        pool_mean=reward.mean(),
        pool_std=reward.std(ddof=0),
        _q1=_numpy_linear_quantile(reward, 0.25) if config.target == "q1" else pl.lit(None, pl.Float64),
        _min=reward.min(),
    )
    return stats.with_columns(
        target_value={
            "mean_minus_2sigma": pl.col("pool_mean") - 2 * pl.col("pool_std"),
            "q1": pl.col("_q1"),
            "min": pl.col("_min"),
        }[config.target],
    )


def _pick_samples(narrow: pl.DataFrame, stats: pl.DataFrame, order: _TieBreakOrder) -> pl.DataFrame:
    """``stats`` with each pool's chosen sample (the earliest with the best reward) and rejected sample
    (of those strictly below the best, the earliest closest to the target): language, sample_idx, row."""
    reward = pl.col("reward")
    # Each sample next to its pool's best reward and target (a gather: row i of `stats` is pool i).
    samples = narrow.select(
        "_pool",
        "_ord",
        "_row",
        "reward",
        _best=stats["best"].gather(narrow["_pool"]),
        _target=stats["target_value"].gather(narrow["_pool"]),
    )
    # Rows are in tie-break order within each pool, so the first match is the earliest sample.
    chosen = (
        samples.filter(reward == pl.col("_best"))
        .filter(pl.col("_pool").is_first_distinct())
        .select("_pool", _chosen_ord="_ord", _chosen_row="_row")
    )
    # Distance to the target of the samples strictly below the best (null for the others, and nulls
    # are skipped); arg_min gives the first, i.e. earliest, of equally close samples.
    closest = pl.when(reward < pl.col("_best")).then((reward - pl.col("_target")).abs()).arg_min()
    rejected = samples.group_by("_pool").agg(
        _rejected_ord=pl.col("_ord").get(closest), _rejected_row=pl.col("_row").get(closest)
    )
    return (
        stats.join(chosen, on="_pool", how="left", maintain_order="left")
        .join(rejected, on="_pool", how="left", maintain_order="left")
        .with_columns(
            chosen_language=order.language_of("_chosen_ord"),
            chosen_sample_idx=order.sample_of("_chosen_ord"),
            rejected_language=order.language_of("_rejected_ord"),
            rejected_sample_idx=order.sample_of("_rejected_ord"),
        )
    )


# Why a pool gives no pair (null: it gives one), in the order the reasons are checked.
_NO_PAIR_REASON = (
    pl.when(pl.col("pool_size") == 0)
    .then(pl.lit(NON_FINITE_SCORES))
    .when(pl.col("pool_size") < 2)
    .then(pl.lit(POOL_TOO_SMALL))
    .when(pl.col("_rejected_ord").is_null())
    .then(pl.lit(NO_SAMPLE_BELOW_BEST))
    .otherwise(pl.lit(None, pl.String))
)


def _draw_prompt_language(pools: pl.DataFrame, narrow: pl.DataFrame, seed: int, order: _TieBreakOrder) -> pl.DataFrame:
    """``prompt_language``, ``prompt_sample_idx`` and ``_prompt_row`` of every pool: one of the languages
    that have samples of the prompt (any sample, finite reward or not), drawn uniformly by a hash of
    (seed, prompt_id), and that language's earliest sample, whose row shows the prompt in it."""
    # Rows are sorted by pool, then tie-break order: the first row of each (pool, language) is its
    # earliest sample, and a pool's languages come in the configured order.
    firsts = (
        narrow.select("_pool", "_ord", "_row", _lang=pl.col("_ord") // order.span)
        .filter(pl.struct("_pool", "_lang").is_first_distinct())
        .with_columns(_nth=pl.int_range(pl.len()).over("_pool"))
    )
    counts = firsts.group_by("_pool", maintain_order=True).agg(_k=pl.len())
    picks = pools.select("_pool", "prompt_id").join(counts, on="_pool", how="left", maintain_order="left")
    drawn = picks.with_columns(
        _nth=pl.Series(_seeded_choices(seed, picks["prompt_id"].to_list(), picks["_k"].to_list()), dtype=pl.Int64)
    ).join(firsts, on=["_pool", "_nth"], how="left", maintain_order="left")
    # `drawn` has one row per pool, in the pools' order
    return pools.with_columns(
        drawn.select(
            prompt_language=order.language_of("_ord"),
            prompt_sample_idx=order.sample_of("_ord"),
            _prompt_row="_row",
        ).get_columns()
    )


def _check_ids_present(narrow: pl.DataFrame) -> None:
    """Every sample needs a prompt_id, language and sample_idx; name the first rows that lack one."""
    if narrow.select(pl.sum_horizontal(pl.col(_KEYS).null_count())).item() == 0:
        return  # the common case, answered from null counts without looking at the rows
    missing_ids = narrow.filter(pl.any_horizontal(pl.col(name).is_null() for name in _KEYS))
    first = ", ".join(str(row + 1) for row in missing_ids["_row"].head(_MAX_ROWS_IN_MESSAGE).to_list())
    raise ValueError(
        f"{missing_ids.height} scored row(s) lack a prompt_id, language or sample_idx (rows {first}, "
        "counting from 1); every sample needs all three: fix the file that scored them"
    )


def _numpy_linear_quantile(values: pl.Expr, q: float) -> pl.Expr:
    """``numpy.percentile(values, 100*q)`` (method "linear") as a group-wise polars expression.

    Written out rather than using ``Expr.quantile(interpolation="linear")`` so the result matches
    numpy bit for bit (polars interpolates with a different formula, off in the last digit at times).
    numpy: virtual index h = (n−1)·q, a = sorted[⌊h⌋], b = sorted[⌊h⌋+1], t = h − ⌊h⌋, and
    ``b − (b−a)·(1−t)`` when t ≥ 0.5, else ``a + (b−a)·t``. Nulls are left out; no values give null.
    """
    n = values.count().cast(pl.Int64)
    h = (n - 1).cast(pl.Float64) * q
    below = h.floor()
    t = h - below
    ordered = values.drop_nulls().sort()
    a = ordered.get(below.cast(pl.Int64), null_on_oob=True)
    b = ordered.get(pl.min_horizontal(below.cast(pl.Int64) + 1, n - 1), null_on_oob=True)
    return pl.when(t >= 0.5).then(b - (b - a) * (1 - t)).otherwise(a + (b - a) * t)


def _number_pools_in_order(narrow: pl.DataFrame, pool_keys: list[str]) -> pl.DataFrame:
    """Add ``_pool``, a dense integer id per pool (0, 1, …), and sort rows by (pool, tie-break order).

    Grouping and joining on one integer is several times faster than on text. The sort matters for
    exactness: floating-point sums depend on the order of their terms, so with each pool's samples in
    tie-break order, means, stds (and hence near-tie picks) do not change when input rows are shuffled.
    Scored files are usually written in that order already; then a cheap check replaces the sort.
    """

    def after(name: str) -> pl.Expr:
        return pl.col(name) > pl.col(name).shift()

    def same(name: str) -> pl.Expr:
        return pl.col(name) == pl.col(name).shift()

    # Each row strictly after the one before it by (pool keys…, _ord), compared left to right.
    in_order = after("_ord")
    for name in reversed(pool_keys):
        in_order = after(name) | (same(name) & in_order)
    already_sorted = narrow.select(in_order.fill_null(True).all()).item()
    pool = pl.struct(pool_keys) if len(pool_keys) > 1 else pl.col(pool_keys[0])
    if already_sorted:
        return narrow.with_columns(_pool=pool.rle_id())
    return narrow.with_columns(_pool=pool.rank("dense") - 1).sort("_pool", "_ord")


def _check_unique_samples(narrow: pl.DataFrame) -> None:
    """Each (prompt_id, language, sample_idx) must appear once, or pool statistics would be skewed.

    ``narrow`` is sorted by (_pool, _ord), and _ord identifies a sample within its pool, so repeats
    sit next to each other.
    """
    same_as_previous = (pl.col("_pool") == pl.col("_pool").shift()) & (pl.col("_ord") == pl.col("_ord").shift())
    repeated = narrow.filter(same_as_previous)
    if repeated.height == 0:
        return
    repeated = repeated.unique(subset=_KEYS).sort("_row")
    raise ValueError(
        f"{repeated.height} sample(s) appear more than once in the scored table: "
        f"{_describe_rows(repeated, repeated.height)} (prompt_id, language, sample_idx). "
        "Each sample must be scored once: remove the duplicates (e.g. a run appended twice)."
    )


def _empty_pools() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "prompt_id": pl.String,
            "language": pl.String,
            "pool_size": pl.Int64,
            "best": pl.Float64,
            "pool_mean": pl.Float64,
            "pool_std": pl.Float64,
            "target_value": pl.Float64,
            "chosen_language": pl.String,
            "chosen_sample_idx": pl.Int64,
            "rejected_language": pl.String,
            "rejected_sample_idx": pl.Int64,
            "_chosen_row": pl.get_index_type(),
            "_rejected_row": pl.get_index_type(),
            "prompt_language": pl.String,
            "prompt_sample_idx": pl.Int64,
            "_prompt_row": pl.get_index_type(),
            "reason": pl.String,
        }
    )


# --------------------------------------------------------------------------------------------------
# Texts and the seeded prompt-language choice


def _fetch_rows(source: pl.DataFrame | pl.LazyFrame, *key_tables: pl.DataFrame) -> pl.DataFrame:
    """The full rows (with prompt and response) of the samples named in ``key_tables``.

    An in-memory table gives them by position (``_row``). A lazy one (a Parquet scan) is read again
    through a semi-join on the sample ids, on the streaming engine so only the matching rows are held;
    matching by id rather than position is what notices a file that changed in between.
    """
    keys = pl.concat([keys.cast(_KEY_TYPES) for keys in key_tables]).unique()
    if isinstance(source, pl.DataFrame):
        return source.select(pl.all().gather(keys["_row"].sort()))
    rows = source.join(keys.drop("_row").lazy(), on=_KEYS, how="semi").collect(engine="streaming")
    if rows.height != keys.height:
        raise RuntimeError(
            f"found {rows.height} of the {keys.height} selected samples when reading their texts: "
            "the scored data changed between the two reads; run again on a file nobody is writing to"
        )
    return rows


def _seeded_choices(seed: int, prompt_ids: list[str], counts: list[int]) -> list[int]:
    """For each prompt id, an index in ``range(count)`` drawn uniformly from a stable hash of
    (seed, prompt_id).

    hashlib rather than polars' ``hash``, whose values may change between polars versions; this is the
    only per-pool Python loop, and it runs only for ``prompt_source="random"`` (≈1 µs per prompt).
    """
    return [
        int.from_bytes(hashlib.blake2b(f"{seed}\x00{pid}".encode(), digest_size=8).digest(), "big") % count
        for pid, count in zip(prompt_ids, counts)
    ]
