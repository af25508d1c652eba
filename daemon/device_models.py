"""The device's engines for one bundle: the full model, every head, and every tail.

Tails live on the device too: when the cloud misses its deadline, the frame's
already-computed reduced tensor is finished locally instead of starting over.
A multiplexer bundle adds paper 001's device/cloud pair: the multiplexer and the
small model the device runs when the multiplexer keeps a frame local; a Dynamic Duo
bundle adds its little model, an M&MNet one its two Minions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from adaptinf.bundle import Bundle
from adaptinf.engines import Engine, open_engine
from adaptinf.engines.emulated_slowdown import EmulatedSlowdown
from adaptinf.engines.onnxruntime_engine import OnnxRuntimeEngine


@dataclass
class MultiplexerPairModels:
    multiplexer: Engine      # frame -> [w_device, w_cloud]
    device: Engine           # the pair's device model
    device_flops: int
    multiplexer_flops: int


@dataclass
class DeviceModels:
    full: Engine
    heads: dict[str, Engine]
    tails: dict[str, Engine]
    pair: MultiplexerPairModels | None = None
    littles: dict[str, Engine] | None = None   # Dynamic Duo's little and SIEVE's alternatives, by name
    minions: tuple[Engine, Engine] | None = None   # M&MNet's
    zoo: dict[str, Engine] | None = None       # every zoo model (MDInference's duplicate runs one), by name
    zoo_multiplexer: Engine | None = None      # frame -> w over the zoo (policy "multiplexer" on a zoo bundle)
    open_model: Callable[[str], Engine] | None = None   # opens another bundle file the same way (calibration)
    preprocess: Engine | None = None           # camera frame -> the model's tensor (the bundle's preprocess graph)

    @classmethod
    def load(cls, bundle: Bundle, backend: str, plan_cache: str, slowdown: float = 1.0,
             on_engine: Callable[[str], None] = lambda file: None) -> "DeviceModels":
        """on_engine(file) is called before each engine is opened (a TensorRT plan may be built
        then, for minutes: the daemon tells systemd)."""
        def engine(file: str) -> Engine:
            on_engine(file)
            e = open_engine(bundle.path(file), backend, plan_cache)
            return EmulatedSlowdown(e, slowdown) if slowdown != 1.0 else e

        points = bundle.split.points if bundle.split else ()
        pair = None
        if bundle.multiplexer is not None:
            mux, small = bundle.model(bundle.multiplexer.pair.model), bundle.model(bundle.multiplexer.pair.device)
            pair = MultiplexerPairModels(engine(mux.file), engine(small.file), small.flops, mux.flops)
        littles = None
        if bundle.dynamic_duo:
            duo = bundle.dynamic_duo
            names = dict.fromkeys([duo.little, *(a.little for a in duo.alternatives)])
            littles = {name: engine(bundle.model(name).file) for name in names}
        minions = tuple(engine(bundle.model(m).file) for m in bundle.mmnet.minions) if bundle.mmnet else None
        full = engine(bundle.full_model.file)
        zoo = ({name: full if name == bundle.full_model.name else engine(bundle.model(name).file)
                for name in bundle.zoo.models} if bundle.zoo else None)
        zoo_mux = (engine(bundle.model(bundle.zoo.multiplexer).file)
                   if bundle.zoo is not None and bundle.zoo.multiplexer else None)
        # onnxruntime always: the graph takes frames of any size, and resizing is no work for a GPU plan
        preprocess = (OnnxRuntimeEngine(bundle.path(bundle.preprocess.graph))
                      if bundle.preprocess is not None else None)
        return cls(full, {p.name: engine(p.head) for p in points},
                   {p.name: engine(p.tail) for p in points}, pair, littles, minions, zoo, zoo_mux, engine,
                   preprocess)

    @property
    def backend(self) -> str:
        return self.full.backend
