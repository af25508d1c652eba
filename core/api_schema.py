"""The local API's messages as msgspec structs: the machine-readable schema.

docs/api-schema.json is generated from these (`python scripts/api_schema.py`), so a client
in another language can be written and checked against it. They cannot drift from the
daemon: tests/test_api_schema.py validates every reply a real adaptinfd sends against
them, holds the daemon to accepting what they accept and refusing what they refuse, and
fails when the committed JSON is not what they generate.

Wire conventions (docs/protocols.md): a ZeroMQ multipart message, frame 0 a msgpack map
(these structs), then raw tensor buffers, C order, little-endian.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec

from adaptinf.api_protocol import CODES, MAX_TENSOR_RANK, OPS, TENSOR_DTYPES
from adaptinf.bundle import OUTPUT_DTYPES

SCHEMA_VERSION = [1, 0]

Id = Union[str, int]
Version = Union[Annotated[list[int], msgspec.Meta(min_length=2, max_length=2)], int]
Dim = Annotated[int, msgspec.Meta(gt=0)]
Mode = Literal["normal", "mission-critical", "power-saving", "private"]
Goal = Literal["latency", "energy"]
Code = Literal[CODES]                 # type: ignore[valid-type]
TensorDtype = Literal[TENSOR_DTYPES]  # type: ignore[valid-type]
OutputDtype = Literal[OUTPUT_DTYPES]  # type: ignore[valid-type]


class Tensor(msgspec.Struct, forbid_unknown_fields=True):
    """A request's tensor: its buffer is the message's frame 1."""

    dtype: TensorDtype
    shape: Annotated[list[Dim], msgspec.Meta(min_length=1, max_length=MAX_TENSOR_RANK)]


class ReplyTensor(msgspec.Struct):
    """A reply tensor: its bytes are the reply's buffer number `buffer` (frames after the header)."""

    dtype: OutputDtype
    shape: list[int]
    buffer: Annotated[int, msgspec.Meta(ge=0)] = 0


class NamedTensor(ReplyTensor):
    name: str = ""


# ---- requests ------------------------------------------------------------------------------
class Request(msgspec.Struct):
    v: Version
    op: Literal[OPS]                  # type: ignore[valid-type]
    id: Id


class InferRequest(Request):
    """op "infer": the model's input tensor, or a uint8 [H, W, 3] camera frame (a bundle with
    preprocessing), and how to serve it."""

    tensor: Tensor
    model: str | None = None
    policy: str | None = None
    mode: Mode | None = None
    goal: Goal | None = None
    deadline_ms: Annotated[float, msgspec.Meta(gt=0, le=3_600_000)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0
    color: Literal["RGB", "BGR"] = "RGB"


class SetModeRequest(Request):
    mode: Mode


class RecordRequest(Request):
    """op "record": the flight recorder's records with a sequence number above `after`."""

    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=20_000)] = 5000


# ---- replies -------------------------------------------------------------------------------
class Reply(msgspec.Struct):
    v: Version
    id: Union[Id, None]
    ok: bool
    code: Code
    message: str | None = None


class HelloReply(Reply):
    protocol: list[int] = []
    server: str = ""
    version: str = ""
    features: list[str] = []
    ops: list[str] = []
    dtypes: list[str] = []
    max_message_bytes: int = 0


class HealthReply(Reply):
    live: bool = False
    ready: bool = False


class ModelInfo(msgspec.Struct):
    name: str
    ready: bool
    classes: list[str]
    backend: str
    inputs: list[NamedTensor]
    outputs: list[NamedTensor]
    policies: list[str]
    partitions: list[str] = []
    preprocess: dict | None = None


class ModelsReply(Reply):
    models: list[ModelInfo] = []


class StatusReply(Reply):
    mode: Mode | None = None
    policy: str | None = None
    goal: Goal | None = None
    bundle: dict | None = None
    link: dict | None = None
    power: dict | None = None
    cloud: dict | None = None
    device: dict | None = None
    latency: dict | None = None


class StatsReply(Reply):
    stages: dict[str, dict] = {}
    codes: dict[str, int] = {}
    placements: dict[str, int] = {}
    policies: dict[str, dict] = {}
    counters: dict[str, int] = {}


class RecordReply(Reply):
    """`lines`: JSON Lines records of the recording format (docs/recorder.md), oldest first;
    `newest`: the last sequence number recorded; ask again with after = the last line's seq.
    `directory`: where the daemon keeps the rotating files (readable by group adaptinf)."""

    lines: list[str] = []
    newest: int = 0
    directory: str | None = None
    dropped: int = 0
    header: dict | None = None        # the recording's header line, to start a file with
    profiles: dict[str, dict] = {}    # the profiles the newest frames name, by id


class SetModeReply(Reply):
    mode: Mode | None = None
    previous: Mode | None = None


class ServedBy(msgspec.Struct):
    """What served the frame; a policy adds its own fields (docs/protocols.md)."""

    placement: str
    policy: str
    goal: Goal
    mode: Mode
    partition: str | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    predicted_ms: float | None = None
    upload_bytes: int | None = None
    est_uplink_bps: float | None = None


class InferReply(Reply):
    """An OK answer has served_by, latency_ms, energy and the named outputs; a classifier adds
    label, class, confidence and scores (buffer 0)."""

    served_by: ServedBy | None = None
    latency_ms: dict[str, float] | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    energy_idle_j: float | None = None
    outputs: list[NamedTensor] | None = None
    label: int | None = None
    confidence: float | None = None
    scores: ReplyTensor | None = None


REQUESTS = {"hello": Request, "health": Request, "models": Request, "status": Request, "stats": Request,
            "set_mode": SetModeRequest, "infer": InferRequest, "record": RecordRequest}
REPLIES = {"hello": HelloReply, "health": HealthReply, "models": ModelsReply, "status": StatusReply,
           "stats": StatsReply, "set_mode": SetModeReply, "infer": InferReply, "record": RecordReply}


def json_schema() -> dict:
    """The JSON Schema (2020-12) of every request and reply, by op."""
    ops = sorted(REQUESTS)
    (schemas, components) = msgspec.json.schema_components(
        [REQUESTS[op] for op in ops] + [REPLIES[op] for op in ops], ref_template="#/$defs/{name}")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"adaptinfd local API {SCHEMA_VERSION[0]}.{SCHEMA_VERSION[1]}",
            "description": "Frame 0 of every message (msgpack). Tensor buffers follow as raw frames, C order, "
                           "little-endian. Generated from core/api_schema.py by scripts/api_schema.py.",
            "requests": {op: s for op, s in zip(ops, schemas[:len(ops)])},
            "replies": {op: s for op, s in zip(ops, schemas[len(ops):])},
            "$defs": components}
