"""The lakehouse's tables: what they hold, how a batch is audited, and where they are stored.

`schemas` defines each table once (Arrow, Spark and pandera schemas and column docs derive from
it); `ingest` turns landed JSONL files into raw_events rows; `validation` is the pandera audit
every batch passes before it is committed; `quality` holds the batch-level rules (volume drops)
that can stop a commit; `storage` is the Delta store both engines read and write through.
"""
