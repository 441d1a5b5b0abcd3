"""The Beam stages that write an extraction's files: TFDS shards (`WriteShards`), a chunk's spills (`WriteSpills`)
and the reports (`WriteReport`). Every file goes through `dataformat.files.atomic_path`, so a storage failure on a
worker is a `files.WriteError` naming the file.
"""

from __future__ import annotations

import apache_beam as beam

from dataformat import schema, shards
from dataformat.files import write_atomically
from dataformat.reports import Report
from dataformat.shards import KeyedRecord
from pipeline import spills


def _assign_shard(record: KeyedRecord, num_shards: dict):
    n = num_shards[record.split]
    return (record.split, shards.shard_of(record.key, n), n), (record.key, record.data)


def _write_one_shard(element, directory: str, kind: str):
    (split, index, n), records = element
    return shards.write_shard(directory, kind, split, index, n, records)


class WriteShards(beam.PTransform):
    """`KeyedRecord`s of serialized examples -> a TFDS folder dataset in `directory`, shards sized by bytes."""

    def __init__(self, directory: str, kind: str, spec: schema.DatasetSpec, shard_bytes: int, metadata=None):
        """metadata: None, or a one-element PCollection holding the dataset's metadata.json content (TFDS'
        `info.metadata`; for sequences/, `BuildSequences.metadata`)."""
        super().__init__()
        self._directory = directory
        self._kind = kind
        self._spec = spec
        self._shard_bytes = shard_bytes
        self._metadata = metadata

    def expand(self, examples):
        shard_bytes = self._shard_bytes
        num_shards = (
            examples
            | "Bytes" >> beam.Map(lambda r: (r.split, (len(r.data), 1)))
            | "BytesPerSplit" >> beam.CombinePerKey(lambda sizes: tuple(map(sum, zip(*sizes))))
            | "NumShards" >> beam.MapTuple(lambda split, size: (split, shards.num_shards_for(size[0], shard_bytes, size[1])))
        )
        written = (
            examples
            | "AssignShard" >> beam.Map(_assign_shard, num_shards=beam.pvalue.AsDict(num_shards))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.Map(_write_one_shard, directory=self._directory, kind=self._kind)
        )
        directory, kind, spec = self._directory, self._kind, self._spec
        all_shards = written | "AllShards" >> beam.combiners.ToList()
        if self._metadata is None:
            return all_shards | "WriteMetadata" >> beam.Map(
                lambda infos: shards.write_metadata(directory, kind, spec, infos))
        return all_shards | "WriteMetadata" >> beam.Map(
            lambda infos, metadata: shards.write_metadata(directory, kind, spec, infos, metadata),
            beam.pvalue.AsSingleton(self._metadata))


class WriteSpills(beam.PTransform):
    """`KeyedRecord`s -> one spill file per split in `directory`, its records sorted by key (see
    `pipeline.chunks`), and `directory`/index.json with each split's record count and bytes."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, records):
        directory = self._directory
        return (
            records
            | "BySplit" >> beam.Map(lambda r: (r.split, (r.key, r.data)))
            | "GroupBySplit" >> beam.GroupByKey()
            | "WriteSpill" >> beam.MapTuple(lambda split, rs: spills.write_spill(directory, split, rs))
            | "AllSpills" >> beam.combiners.ToList()
            | "WriteIndex" >> beam.Map(lambda infos: spills.write_spill_index(directory, infos))
        )


class WriteReport(beam.PTransform):
    """Collects the rows of a `Report` into its file.

    The rows of a whole dataset are held by one worker: a few hundred bytes per video (or per failure), fine up
    to millions of videos.
    """

    def __init__(self, path: str, report: Report):
        super().__init__()
        self._path = path
        self._report = report

    def expand(self, rows):
        path, report = self._path, self._report
        return (
            rows
            | "Collect" >> beam.combiners.ToList()
            | "Write" >> beam.Map(lambda rs: write_atomically(path, report.text(rs)))
        )
