"""Events before they are tables: the vocabulary every event is judged by, and the synthetic source.

`vocabulary` holds what an event may say (event names, platforms, variants, categories), how late a
line may land and where a landing day's files go; the table schemas and the cleaning rules import
it. `generator` lands synthetic app events, with the data problems of a real stream, as JSONL
files in that layout. Reading those files into the raw_events table is `lakehouse.tables.ingest`:
it needs the table's schema, and events/ imports nothing from tables/.
"""
