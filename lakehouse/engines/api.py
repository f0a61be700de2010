"""The PySpark DataFrame API of whichever engine a transformation runs on.

Transformations are written once, against the PySpark API: `F` (functions), `T` (types) and
`Window`. They run on Spark, and on DuckDB through SQLFrame. Each library ships its own functions
module, and a Column built by one does not work in the other's DataFrames, so `F`, `T` and
`Window` here resolve at call time to the library of the DataFrames the running transformation
received. `@transformation` marks a function whose DataFrame arguments decide that.

Where the two engines disagree on a function, the difference is settled once, in a helper of
`_SparkApi` / `_SqlFrameApi` below, with the reason next to it. Transformations call those
helpers through `compat`, and never ask which engine they are on.
"""

from __future__ import annotations

import dataclasses
import functools
from contextvars import ContextVar
from typing import Any, Callable, TypeVar

Fn = TypeVar("Fn", bound=Callable[..., Any])
# Spark's Jackson refuses a number of more than 1000 digits (StreamReadConstraints), and one of 1001
# on some of its paths only (there it counts a missing fraction or exponent as -1 digits); DuckDB's
# yyjson reads any. So both refuse a line with a run of more than this many number characters
# (digits . e E + -), in a number or a string: no event needs a tenth of it.
MAX_NUMBER_CHARS = 1000


class _JsonObjects:
    """Reading JSON objects, the same on every engine; each engine supplies the four primitives."""

    def json_objects(self, df, line: str, fields: dict):
        """`df` with the JSON object of its `line` column read into `fields`, in three columns.

        - `_json`: null unless `_is_object`, else a struct shaped as `fields`, which maps names
          to "string" (the field's text when it is a JSON string, else null), "text" (the text of
          any JSON value: numbers may come as strings) or a dict of the same shape for a nested
          object;
        - `_is_object`: the line is exactly one strict JSON (RFC 8259) object, the objects read
          here repeat no key (which of two values counts is a choice each engine makes
          differently), and it holds no run of more than MAX_NUMBER_CHARS number characters;
        - `_not_string`: a "string" field holds a number, boolean, object or array.

        Parsed once, in its own stage: in one expression tree Spark would parse again for every
        field it reads.
        """
        F = self.functions
        paths, strings = ["$"], []

        def texts(shape: dict, path: str, column):
            fields = []
            for name, kind in shape.items():
                leaf = column[name]
                if isinstance(kind, dict):
                    paths.append(f"{path}.{name}")
                    leaf = texts(kind, f"{path}.{name}", leaf)
                elif kind == "string":
                    strings.append(leaf)
                    leaf = self.json_string(leaf)
                fields.append(leaf.alias(name))
            return F.struct(*fields)

        parsed = F.col("_json_leaves")
        text = texts(fields, "$", parsed)
        unique_keys = F.lit(True)
        for path in paths:
            keys = F.when(
                parsed.isNotNull(), self.json_keys(F.col(line), path)
            )  # only on JSON objects
            unique_keys = unique_keys & F.coalesce(
                F.size(keys) == F.size(F.array_distinct(keys)), F.lit(True)
            )
        not_string = F.lit(False)
        for leaf in strings:
            not_string = not_string | F.coalesce(self.json_not_string(leaf), F.lit(False))
        staged = df.select("*", self.parsed_json_leaves(F.col(line), fields).alias("_json_leaves"))
        staged = staged.select(
            "*",
            (parsed.isNotNull() & unique_keys & self._numbers_within_limit(F.col(line))).alias(
                "_is_object"
            ),
        )
        return staged.select(
            *df.columns,
            F.when(F.col("_is_object"), text).alias("_json"),
            "_is_object",
            (F.col("_is_object") & not_string).alias("_not_string"),
        )

    def _numbers_within_limit(self, line):
        F = self.functions
        runs = F.translate(F.regexp_replace(line, "[^-+.eE0-9]+", " "), "-+.eE0123456789", "#" * 15)
        longest = F.length(F.array_max(F.split(runs, " ")))  # runs of "#" sort by length
        return F.when(F.length(line) > MAX_NUMBER_CHARS, longest <= MAX_NUMBER_CHARS).otherwise(
            F.lit(True)
        )


class _SparkApi(_JsonObjects):
    name = "spark"

    def __init__(self) -> None:
        from pyspark.sql import Window, functions, types

        self.functions, self.types, self.Window = functions, types, Window

    def try_cast(self, column, type_name: str):
        return column.try_cast(type_name)

    def timestamp_from_micros(self, micros):
        return self.functions.timestamp_micros(micros)

    def parse_timestamp(self, text):
        """An ISO-8601 text with a zone as a UTC timestamp, or null."""
        return self.functions.try_to_timestamp(text)

    def settled(self, df):
        """`df` with its columns plain names again: call it after a join whose columns are used further."""
        return df

    def day_sequence(self, first, last):
        """The array of dates first, first + 1 day, ..., last."""
        return self.functions.sequence(first, last)

    def parsed_json_leaves(self, line, fields: dict):
        # Text fields are parsed as VARIANT, which keeps the JSON type: from_json would render a
        # number in a string field with Java's own float format, which no other engine shares.
        # Only a line that is a JSON object is parsed: on a broken one from_json returns the
        # fields it read before the break.
        T, F = self.types, self.functions

        def struct(shape: dict):
            return T.StructType(
                [
                    T.StructField(
                        k,
                        struct(v)
                        if isinstance(v, dict)
                        else T.VariantType()
                        if v == "string"
                        else T.StringType(),
                    )
                    for k, v in shape.items()
                ]
            )

        # Jackson, under from_json and json_object_keys, reads the first value of a line and ignores
        # what follows; from_json turns on single quotes and NaN/Infinity (JSONOptions), and
        # json_object_keys reads unescaped control characters and lone surrogate escapes ("\ud800").
        # The variant parser is Jackson with every JsonReadFeature off (no comments, unquoted or
        # single-quoted names, leading zeros or "+", ".5" or "5.", NaN/Infinity, control characters,
        # escapes of any character, trailing commas or missing values) and refuses lone surrogates
        # (duplicate keys are allowed through spark.sql.variant.allowDuplicateKeys and judged by
        # json_objects, as are long numbers). The two wrappers reject trailing text: a line with
        # text after its object cannot be both the only element of an array and the value of an
        # object's only key.
        one_value = (F.json_array_length(F.concat(F.lit("["), line, F.lit("]"))) == 1) & (
            F.size(F.json_object_keys(F.concat(F.lit('{"v":'), line, F.lit("}")))) == 1
        )
        is_object = (
            F.json_object_keys(line).isNotNull()
            & F.try_parse_json(line).isNotNull()
            & F.coalesce(one_value, F.lit(False))
        )
        return F.when(is_object, F.from_json(line, struct(fields)))

    def json_keys(self, line, path: str):
        F = self.functions
        return (
            F.json_object_keys(F.get_json_object(line, path))
            if path != "$"
            else F.json_object_keys(line)
        )

    def json_string(self, leaf):
        return self.functions.when(
            self.functions.schema_of_variant(leaf) == "STRING",
            self.functions.variant_get(leaf, "$", "string"),
        )

    def json_not_string(self, leaf):
        return leaf.isNotNull() & ~self.functions.schema_of_variant(leaf).isin("STRING", "VOID")


class _SqlFrameApi(_JsonObjects):
    name = "sqlframe"

    def __init__(self) -> None:
        from sqlframe.base import functions, types
        from sqlframe.base.window import Window

        self.functions, self.types, self.Window = functions, types, Window

    def try_cast(self, column, type_name: str):
        # SQLFrame's Column has no try_cast; DuckDB's TRY_CAST has Spark's meaning (null when the
        # text is not a value of the type).
        from sqlframe.base.column import Column
        from sqlglot import exp

        return Column(
            exp.TryCast(
                this=column.column_expression, to=exp.DataType.build(type_name, dialect="spark")
            )
        )

    def timestamp_from_micros(self, micros):
        # SQLFrame does not translate timestamp_micros; DuckDB's make_timestamp(micros) is the same function.
        return self.functions.call_function("make_timestamptz", micros)

    def settled(self, df):
        # SQLFrame keeps resolving a column named after a join to the joined tables' own columns,
        # even after a fillna or select replaced it: a window over a filled column summed the
        # unfilled one. A view over the DataFrame's SQL starts it afresh (DuckDB still optimizes
        # through the view; nothing is computed here).
        from lakehouse.engines.duckdb import view_of_sql

        return view_of_sql(df)

    def day_sequence(self, first, last):
        # SQLFrame passes sequence(date, date) to DuckDB's generate_series, which has no (DATE,
        # DATE) form: step through timestamps by a day and cast the array back to dates.
        from sqlframe.base.column import Column
        from sqlglot import exp

        def ts(column):
            return exp.Cast(this=column.column_expression, to=exp.DataType.build("TIMESTAMP"))

        series = exp.Anonymous(
            this="generate_series",
            expressions=[
                ts(first),
                ts(last),
                exp.Interval(this=exp.Literal.string("1"), unit=exp.var("DAY")),
            ],
        )
        return Column(exp.Cast(this=series, to=exp.DataType.build("DATE[]", dialect="duckdb")))

    def parse_timestamp(self, text):
        # SQLFrame translates try_to_timestamp to a strptime with one fixed format; a cast reads
        # ISO-8601 with any fraction and zone, as Spark's does.
        return self.try_cast(text, "timestamp")

    def parsed_json_leaves(self, line, fields: dict):
        # SQLFrame translates from_json to CAST(JSON(line) AS STRUCT), which fails the whole query
        # on the first line that is not JSON. json_transform reads a value of the wrong type as
        # null; it only runs on lines json_valid accepts. Text fields are read as JSON, which
        # keeps their type.
        import json

        from sqlframe.base.column import Column
        from sqlglot import exp

        def shape(fields: dict) -> dict:
            return {
                k: shape(v) if isinstance(v, dict) else "JSON" if v == "string" else "VARCHAR"
                for k, v in fields.items()
            }

        # DuckDB's json functions raise on text that is not JSON: json_valid guards each of them.
        F = self.functions
        is_object = F.when(
            F.call_function("json_valid", line),
            (F.call_function("json_type", line) == "OBJECT") & ~self._beyond_strict_json(line),
        )
        parsed = exp.Case(
            ifs=[
                exp.If(
                    this=is_object.column_expression,
                    true=exp.Anonymous(
                        this="json_transform",
                        expressions=[
                            line.column_expression,
                            exp.Literal.string(json.dumps(shape(fields))),
                        ],
                    ),
                )
            ]
        )
        return Column(parsed)

    def _beyond_strict_json(self, line):
        """Whether a line json_valid accepts holds what strict JSON (RFC 8259) forbids.

        DuckDB builds its reader (yyjson) with YYJSON_READ_ALLOW_INF_AND_NAN |
        YYJSON_READ_ALLOW_TRAILING_COMMAS (extension/json/include/json_common.hpp): NaN, Inf and
        Infinity in any case and with either sign, and a comma before "}" or "]". yyjson's other
        extensions (comments, single quotes, unquoted keys, lone surrogates, other spellings of
        numbers or whitespace) are off. Outside its strings, JSON that json_valid accepts holds
        those letters, or a comma before a bracket, only as these extensions. Strings are only
        cut out of the rare lines that could hold them.
        """
        F = self.functions
        trailing_comma = r",[ \t\n\r]*[]}]"
        could_extend = (
            F.lower(line).contains("nan")
            | F.lower(line).contains("inf")
            | line.rlike(trailing_comma)
        )
        outside_strings = F.regexp_replace(line, r'"([^"\\]|\\.)*"', "")
        return F.when(
            could_extend, outside_strings.rlike("(?i)nan|inf|" + trailing_comma)
        ).otherwise(F.lit(False))

    def json_keys(self, line, path: str):
        return self.functions.call_function("json_keys", line, self.functions.lit(path))

    # A leaf is the JSON text of its value (JSON null is SQL null): its first character gives its
    # type without another parse.
    def json_string(self, leaf):
        return self.functions.when(
            self._first_char(leaf) == '"',
            self.functions.call_function("json_extract_string", leaf, self.functions.lit("$")),
        )

    def json_not_string(self, leaf):
        return leaf.isNotNull() & (self._first_char(leaf) != '"')

    def _first_char(self, leaf):
        return self.functions.substring(leaf.cast("string"), 1, 1)


_APIS: dict[str, Any] = {}
_current: ContextVar[Any] = ContextVar("pyspark_api", default=None)


def _api_named(name: str):
    if name not in _APIS:
        _APIS[name] = _SparkApi() if name == "spark" else _SqlFrameApi()
    return _APIS[name]


def _api_of(value: Any):
    """The API of the first DataFrame found in `value` (a DataFrame, or a dataclass holding some)."""
    module = type(value).__module__
    if module.startswith("sqlframe"):
        return _api_named("sqlframe")
    if module.startswith("pyspark.sql") and hasattr(value, "schema"):
        return _api_named("spark")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            found = _api_of(getattr(value, field.name))
            if found is not None:
                return found
    return None


def transformation(fn: Fn) -> Fn:
    """Run `fn` with the PySpark API of the engine its DataFrame arguments come from."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        api = next(
            (found for found in map(_api_of, (*args, *kwargs.values())) if found is not None), None
        )
        if api is None:
            if _current.get() is None:
                raise TypeError(f"{fn.__qualname__} needs a DataFrame argument to know its engine")
            return fn(*args, **kwargs)
        token = _current.set(api)
        try:
            return fn(*args, **kwargs)
        finally:
            _current.reset(token)

    return wrapper  # type: ignore[return-value]


# Spark SQL names of the schema types: both libraries cast by them.
_SQL_TYPES = {
    "string": "string",
    "long": "bigint",
    "int": "int",
    "double": "double",
    "date": "date",
    "timestamp": "timestamp",
    "binary": "binary",
}


@transformation
def conform(df, schema):
    """`df` as exactly `schema`'s columns, in order, each cast to its type.

    A transformation's last step: DuckDB sums integers into 128-bit decimals where Spark keeps
    longs, so without it the two engines would hand over different types.
    """
    return df.select(
        *[F.col(c.name).cast(_SQL_TYPES[c.dtype]).alias(c.name) for c in schema.columns]
    )


def _active():
    api = _current.get()
    if api is None:
        raise RuntimeError(
            "PySpark API used outside a @transformation: no DataFrame says which engine to use"
        )
    return api


class _Resolved:
    def __init__(self, part: str) -> None:
        self._part = part

    def __getattr__(self, name: str):
        return getattr(getattr(_active(), self._part), name)


class _Compat:
    def __getattr__(self, name: str):
        return getattr(_active(), name)


F: Any = _Resolved("functions")
T: Any = _Resolved("types")
Window: Any = _Resolved("Window")
compat: Any = _Compat()
