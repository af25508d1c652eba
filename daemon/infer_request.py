"""An `infer` request, validated into a typed value before it becomes a frame.

The daemon serves models by name (daemon/service.py `served_models`): the bundle's
(its input spec, its policies) and, with an MCU, the multi-dsNN (features in, the MCU
placement policies). `parse_infer` checks every field against the model asked for and
raises ApiError with the code and a message naming the field; nothing else in the
frame path re-checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptinf import api_protocol as api
from adaptinf.policies.plan import GOALS, MODES

MAX_DEADLINE_MS = 3_600_000


@dataclass(frozen=True)
class ServedModel:
    name: str
    shape: tuple[int, ...]
    dtype: str
    policies: tuple[str, ...]      # what a request may ask for
    default_policy: str
    classes: tuple[str, ...]       # label -> class name, for the reply; () : not a classifier
    run: Any = None                # job -> FrameResult: the executor that serves it
    on_mcu: bool = False
    outputs: tuple = ()            # bundle.OutputSpec: the named tensors of a reply
    camera: bool = False           # takes uint8 H x W x 3 frames of any size (the bundle's preprocessing)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))   # compared with an array's shape per frame


@dataclass
class InferRequest:                # (not frozen: a frozen dataclass's __init__ costs 2x, per frame)
    id: Any
    model: ServedModel
    frame: np.ndarray
    mode: str
    policy: str
    goal: str
    deadline_s: float | None
    priority: int
    keepalive: Any                 # the zmq frames the array views
    camera: bool = False           # frame is a camera frame (RGB) for the bundle's preprocessing


def parse_infer(req: api.Request, served: dict[str, ServedModel], default_model: str, default_mode: str,
                default_goal: str, known_policies: tuple[str, ...] = ()) -> InferRequest:
    h = req.header
    name = h.get("model", default_model)
    model = served.get(name) if isinstance(name, str) else None
    if model is None:
        raise api.ApiError(api.NOT_FOUND, f"no model {name!r}; this daemon serves {list(served)}")
    frame, camera = model_frame(api.tensor_from_request(req), model, h.get("color", "RGB"))
    mode = h.get("mode", default_mode)
    if mode not in MODES:
        raise api.ApiError(api.INVALID_ARG, f"mode must be one of {list(MODES)}")
    policy = h.get("policy", model.default_policy)
    if not isinstance(policy, str) or policy not in model.policies:
        raise api.ApiError(api.NOT_FOUND if policy in known_policies else api.INVALID_ARG,
                           f"policy {policy!r} is not available for {name!r}; available: {list(model.policies)}")
    goal = h.get("goal", default_goal)
    if goal not in GOALS:
        raise api.ApiError(api.INVALID_ARG, f"goal must be one of {list(GOALS)}")
    deadline_ms = h.get("deadline_ms")
    if deadline_ms is not None and (isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float))
                                    or not 0 < deadline_ms <= MAX_DEADLINE_MS):
        raise api.ApiError(api.INVALID_ARG, f"deadline_ms must be a number in (0, {MAX_DEADLINE_MS}]")
    priority = h.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255:
        raise api.ApiError(api.INVALID_ARG, "priority must be an integer in [0, 255]")
    return InferRequest(req.id, model, frame, mode, policy, goal, deadline_ms / 1e3 if deadline_ms else None,
                        priority, req.buffers, camera)


COLORS = ("RGB", "BGR")      # a camera frame's channel order: PIL's and most decoders', OpenCV's


def model_frame(x: np.ndarray, model: ServedModel, color: Any = "RGB") -> tuple[np.ndarray, bool]:
    """(the frame, whether it is a camera frame): the model's exact tensor (its batch of one
    may be left out), or, for a model with preprocessing, a uint8 H x W x 3 image of any size,
    which the device then preprocesses (BGR is turned to RGB here)."""
    if color not in COLORS:
        raise api.ApiError(api.INVALID_ARG, f"color must be one of {list(COLORS)}, got {color!r}")
    dtype = api.dtype_name(x.dtype)
    if dtype == model.dtype and x.shape == model.shape:
        return x, False
    if dtype == model.dtype and len(model.shape) > 1 and model.shape[0] == 1 and x.shape == model.shape[1:]:
        return x.reshape(model.shape), False
    exact = f"{model.dtype}{list(model.shape)}"
    if not model.camera:
        raise api.ApiError(api.INVALID_ARG, f"model takes {exact}, got {x.dtype.name}{list(x.shape)}")
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
        raise api.ApiError(api.INVALID_ARG, f"model takes {exact}, or a camera frame: uint8 [H, W, 3], RGB (or BGR "
                                            f"with color: \"BGR\"); got {x.dtype.name}{list(x.shape)}"
                                            + (": convert greyscale or RGBA to 3 channels first"
                                               if x.dtype == np.uint8 and x.ndim in (2, 3) else ""))
    return (np.ascontiguousarray(x[..., ::-1]) if color == "BGR" else x), True
