"""The room and the mix on the training device: a batched torch twin of `SceneRenderer.mix_side`.

A GPU trains on scenes faster than CPU workers render them: most of a scene's CPU time is the
FFT convolution of every source with its BRIR (and the enrollment's mel frames). With
`scenes.mix_on_device`, a worker sends only what `SceneRenderer.draw` chose, packed by `pack`
into fixed-size tensors (dry crops, zero-padded BRIRs, masks, level draws), and `mix_side` does
the rest on the device with the numpy path's arithmetic: the same seed gives the same scenes to
float32 rounding.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.fft import next_fast_len

from training.data.rooms import RoomBank
from training.data.scenes import NOISE_SOURCES, DryScene, DrySide

SIDES = {"scene": "scene/", "enrollment": "enroll/"}  # DryScene field -> key prefix in a packed batch


def _stack(rows: list[np.ndarray], count: int, shape: tuple[int, ...], dtype: type) -> torch.Tensor:
    out = np.zeros((count, *shape), dtype)
    for j, row in enumerate(rows):
        out[(j, *(slice(0, s) for s in row.shape))] = row  # BRIRs shorter than `taps` end in zeros
    return torch.from_numpy(out)


def _values(values: list[float], count: int) -> torch.Tensor:
    return torch.tensor(list(values) + [0.0] * (count - len(values)), dtype=torch.float32)


def pack_side(side: DrySide, bank: RoomBank, interferers: int, taps: int, prefix: str) -> dict[str, torch.Tensor]:
    """One side as tensors of fixed shapes (so a DataLoader can batch them): up to `interferers`
    interferers and NOISE_SOURCES[1] noises, with masks; BRIRs in the bank's float16 (exact),
    zero-padded to `taps`."""
    n, noises = len(side.talker), NOISE_SOURCES[1]
    irs = [bank.ir(p, np.float16) for p in side.interferer_positions]
    noise_irs = [bank.ir(p, np.float16) for p in side.noise_positions]
    talker_ir = bank.ir(side.position, np.float16)
    longest = max(ir.shape[1] for ir in [talker_ir, *irs, *noise_irs])
    if longest > taps:
        raise ValueError(f"a BRIR has {longest} taps, more than the {taps} packed")
    return {prefix + "talker": torch.from_numpy(np.asarray(side.talker, np.float32)),
            prefix + "talker_ir": _stack([talker_ir], 1, (2, taps), np.float16)[0],
            prefix + "interferers": _stack(side.interferers, interferers, (n,), np.float32),
            prefix + "interferer_irs": _stack(irs, interferers, (2, taps), np.float16),
            prefix + "interferer_mask": torch.arange(interferers) < len(side.interferers),
            prefix + "interferer_db": _values(side.interferer_db, interferers),
            prefix + "noises": _stack(side.noises, noises, (n,), np.float32),
            prefix + "noise_irs": _stack(noise_irs, noises, (2, taps), np.float16),
            prefix + "noise_mask": torch.arange(noises) < len(side.noises),
            prefix + "snr_db": torch.tensor(side.snr_db, dtype=torch.float32),
            prefix + "level_db": torch.tensor(side.level_db, dtype=torch.float32)}


def pack(dry: DryScene, bank: RoomBank, interferers: int, taps: int) -> dict[str, torch.Tensor]:
    """A drawn scene as a flat dict of tensors: both sides (keys "scene/...", "enroll/...") and
    the teacher's d-vector."""
    out = {"dvector": torch.from_numpy(np.asarray(dry.dvector, np.float32))}
    for field, prefix in SIDES.items():
        out.update(pack_side(getattr(dry, field), bank, interferers, taps, prefix))
    return out


def convolve(dry: torch.Tensor, irs: torch.Tensor) -> torch.Tensor:
    """Dry signals (..., n) through BRIRs (..., 2, taps) -> (..., 2, n): the first n samples of
    the full convolution, as `scenes._spatialise`."""
    n = dry.shape[-1]
    size = next_fast_len(n + irs.shape[-1] - 1, real=True)  # long enough that nothing wraps around
    spectrum = torch.fft.rfft(dry.float(), size).unsqueeze(-2) * torch.fft.rfft(irs.float(), size)
    return torch.fft.irfft(spectrum, size)[..., :n]


def _energy(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean((-2, -1)) + 1e-12


def mix_side(batch: dict[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixture, talker image), each (B, 2, n), of one packed side: `SceneRenderer.mix_side`
    batched, the same levels and the same peak limit."""
    def get(key: str) -> torch.Tensor:
        return batch[prefix + key]

    count = get("interferers").shape[1]
    dry = torch.cat([get("talker")[:, None], get("interferers"), get("noises")], 1)
    irs = torch.cat([get("talker_ir")[:, None], get("interferer_irs"), get("noise_irs")], 1)
    images = convolve(dry, irs)  # (B, sources, 2, n)
    target, others, noises = images[:, 0], images[:, 1:1 + count], images[:, 1 + count:]
    level = _energy(target)  # (B,)
    scale = torch.sqrt(level[:, None] / _energy(others) * 10 ** (get("interferer_db") / 10))
    scale = torch.where(get("interferer_mask"), scale, torch.zeros_like(scale))
    mixture = target + (others * scale[..., None, None]).sum(1)
    noise = (noises * get("noise_mask")[..., None, None].to(noises.dtype)).sum(1)
    mixture = mixture + noise * torch.sqrt(level / _energy(noise) * 10 ** (-get("snr_db") / 10))[:, None, None]
    gain = 10 ** (get("level_db") / 20) / torch.sqrt(level)
    peak = (mixture.abs().amax((-2, -1)) * gain).clamp_min(1e-9)
    gain = torch.where(peak < 0.99, gain, gain * 0.99 / peak)[:, None, None]
    return mixture * gain, target * gain
