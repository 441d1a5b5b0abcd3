"""The dataset card: what another team reads about an extraction output through TFDS alone.

    builder = tfds.builder_from_directory("OUT/sequences")
    builder.info.name, builder.info.description, builder.info.homepage, builder.info.citation
    builder.info.supervised_keys     # ('features', 'label'); frames/: ('image', 'label')
    builder.info.metadata["provenance"]  # weights and their SHA-256, fps, image size, precision, splits, versions

Both datasets of an output carry the same name (TFDS' dataset name) and tell themselves apart by TFDS' config
name (`frames` / `sequences`): `info.full_name` is e.g. `ucf101/sequences/1.1.0`. The shard files keep their
names (`sequences-train.tfrecord-00000-of-00001`): dataset_info.json names them with a literal file name
template, so the TFDS name does not depend on them and neither do this project's readers.

What is content and what is description: the name, description, homepage and citation (`DESCRIPTION_FIELDS`)
describe the data and leave its identity alone (`integrity.fingerprint` leaves them out, a rerun that changes
only them needs no --overwrite); the provenance records how the data was made, from the settings that made it
(already part of the identity) and the SHA-256 of the weights file loaded. No date: reruns are byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import unicodedata
from typing import Optional

from dataformat import schema

# In metadata.json of both datasets (TFDS' `info.metadata`): how the data was made (see `pipeline.card`).
PROVENANCE = "provenance"
# The supervised pairs of `as_dataset(as_supervised=True)`.
SUPERVISED_KEYS = {schema.SEQUENCES: (schema.FEATURES, schema.LABEL), schema.FRAMES: (schema.IMAGE, schema.LABEL)}
# The card's fields in dataset_info.json (its JSON names): description of the data, not part of its identity.
DESCRIPTION_FIELDS = ("name", "description", "citation", "location")

# TFDS' dataset names are identifiers (`tfds.core.naming.is_valid_dataset_name`) and its own catalog writes them
# in snake case; the card takes snake case only, so a name means the same in every TFDS tool.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME_LENGTH = 100


@dataclasses.dataclass(frozen=True)
class DatasetCard:
    """What `shards.write_metadata` writes beside the schema: TFDS' name, description, homepage and citation of
    the dataset, and how it was made (`provenance`, a JSON object, in metadata.json)."""

    name: str
    description: str
    homepage: str = ""
    citation: str = ""
    provenance: Optional[dict] = None

    def __post_init__(self):
        problem = name_problem(self.name)
        if problem:
            raise ValueError(problem)


def name_problem(name: str) -> Optional[str]:
    """Why `name` is not a dataset name the card takes, or None."""
    if _NAME.match(name) and len(name) <= MAX_NAME_LENGTH:
        return None
    return (f"dataset name {name!r} is not a TFDS dataset name: lower-case letters, digits and '_', starting with "
            f"a letter, at most {MAX_NAME_LENGTH} characters (e.g. {name_from(name)!r})")


def name_from(text: str) -> str:
    """A TFDS dataset name made from any text (an output folder's name): accented letters without their accents
    (`Café` -> `cafe`, Unicode's NFKD decomposition), lower case, every run of other characters one '_', prefixed
    with `dataset_` when it does not start with a letter (so a name in another script becomes `dataset`)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not name[:1].isalpha():
        name = f"dataset_{name}".rstrip("_")
    return name[:MAX_NAME_LENGTH].rstrip("_")


def name_of_folder(output_dir: str) -> str:
    """The default dataset name of an extraction written to `output_dir`: its folder's name, as TFDS takes it."""
    path = output_dir.rstrip("/")
    if "://" not in path:
        path = os.path.abspath(path)
    return name_from(path.rsplit("/", 1)[-1])


def tfds_info_args(kind: str, card: Optional[DatasetCard]) -> dict:
    """The arguments of `tfds.core.DatasetInfo` (and of its `DatasetIdentity`) that the card sets for dataset
    `kind`; without a card, what outputs written before it had (the name `kind`, no config)."""
    if card is None:
        return {"identity": {"name": kind}, "info": {"description": schema.description_for(kind)}}
    description = f"{card.description.rstrip()}\n\n{kind}/: {schema.description_for(kind)}"
    return {"identity": {"name": card.name, "config_name": kind, "config_description": schema.description_for(kind)},
            "info": {"description": description, "homepage": card.homepage or None,
                     "citation": card.citation or None, "supervised_keys": SUPERVISED_KEYS[kind]}}


def identity_bytes(file_name: str, data: bytes) -> bytes:
    """The bytes of a dataset metadata file that identify the data (`integrity.fingerprint`): the file itself,
    or, for a file that holds a card, the file without it (canonical JSON), so that renaming or describing a
    dataset keeps its identity. Files written before the card are hashed as they are, so their fingerprints
    stay what they were."""
    if file_name not in ("dataset_info.json", "metadata.json"):
        return data
    try:
        content = json.loads(data)
    except ValueError:
        return data
    if not isinstance(content, dict):
        return data
    if file_name == "metadata.json" and PROVENANCE in content:
        content.pop(PROVENANCE)
    elif file_name == "dataset_info.json" and content.get("configName") in schema.DATASET_KINDS:
        for field in DESCRIPTION_FIELDS:
            content.pop(field, None)
    else:
        return data
    return json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
