#!/usr/bin/env python
"""Turn your own video into slow motion (x2, x4, x8) with a trained frame interpolator (vinterp, SuperSloMo).

Examples::

    python scripts/vinterp_slowmo.py --checkpoint outputs/vinterp/runs/<run>/checkpoints/last.ckpt \\
        --input clip.mp4 --factor 4 --output clip_x4.mp4
    python scripts/vinterp_slowmo.py --official unsupervised_adobe2slowflow.pth --flow-scale 2 \\
        --input frames/ --input-fps 30 --factor 8 --output slowmo_frames/

Input: a video file OpenCV decodes (MP4, AVI, MOV, ...) or a folder of frames (PNG/JPEG/BMP, natural order of the
names: ``frame_2`` before ``frame_10``). Output: a video file (``.mp4``/``.mov``/``.mkv`` written with the ``mp4v``
codec, ``.avi`` with MJPG) or, for any other name, a folder of PNG frames ``00000.png, 00001.png, ...``.

Between each two consecutive input frames the network synthesises ``factor - 1`` frames at ``t = k / factor``, so
``n`` input frames become ``(n - 1) * factor + 1``; the input frames are written unchanged at positions
``0, factor, 2 * factor, ...``. Frames whose sides are not multiples of the network's stride are zero-padded
bottom/right for the network and cropped back, as the official evaluation does.

Frame rate: by default the output plays at the input's frame rate, so the clip lasts ``factor`` times longer (slow
motion); ``--keep-duration`` multiplies the frame rate by ``factor`` instead (a smoother clip of the same length);
``--fps`` sets it explicitly. A folder has no frame rate: ``--input-fps`` (default 30) gives it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file from a source checkout: make ``nvresearch`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nvresearch.vinterp.data import IMAGE_EXTENSIONS, natural_key  # noqa: E402
from nvresearch.vinterp.inference import SLOWMO_FACTORS, interpolate_pair  # noqa: E402

VIDEO_CODECS = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".m4v": "mp4v", ".avi": "MJPG"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Slow motion for a video or a folder of frames with a trained vinterp (SuperSloMo) model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Input:" + __doc__.split("Input:", 1)[1] if __doc__ else None,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint written by `python -m nvresearch.train paper=vinterp`")
    source.add_argument("--official", help="a released checkpoint of the official code (load_official)")
    parser.add_argument("--flow-scale", type=float, default=2.0, help="flow_scale of an --official model (2)")
    parser.add_argument("--input", required=True, help="video file or folder of frames")
    parser.add_argument("--output", required=True, help="video file (.mp4, .avi, ...) or folder for PNG frames")
    parser.add_argument("--factor", type=int, default=4, choices=SLOWMO_FACTORS, help="frame-rate multiplier (4)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--keep-duration", action="store_true", help="multiply the frame rate instead of slowing down")
    rate.add_argument("--fps", type=float, help="frame rate of the output video")
    parser.add_argument("--input-fps", type=float, default=30.0, help="frame rate of a folder of frames (30)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return parser


def _folder_frames(folder: Path) -> tuple[Iterator[np.ndarray], int]:
    import cv2

    paths = sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    paths = [p for p in paths if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise ValueError(f"{folder}: no frames in the folder (extensions {', '.join(IMAGE_EXTENSIONS)})")

    def frames() -> Iterator[np.ndarray]:
        for p in paths:
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{p}: not a readable image")
            yield image

    return frames(), len(paths)


def _video_frames(video: Path) -> tuple[Iterator[np.ndarray], float]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise ValueError(f"{video}: OpenCV cannot open it as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return frames(), float(fps)


class _Writer:
    """A video file (OpenCV) or a folder of PNGs; frames are BGR uint8 arrays."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.cv2, self.path, self.count = cv2, path, 0
        codec = VIDEO_CODECS.get(path.suffix.lower())
        if codec is None:
            path.mkdir(parents=True, exist_ok=True)
            self.video = None
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
            if not self.video.isOpened():
                raise ValueError(f"{path}: OpenCV cannot write this video (codec {codec}); try .avi or a folder")

    def write(self, frame: np.ndarray) -> None:
        if self.video is None:
            if not self.cv2.imwrite(str(self.path / f"{self.count:05d}.png"), frame):
                raise ValueError(f"{self.path}: cannot write frame {self.count}")
        else:
            self.video.write(frame)
        self.count += 1

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


def _load_net(args: argparse.Namespace) -> torch.nn.Module:
    if args.official:
        from nvresearch.vinterp.official import load_official

        net = load_official(args.official, flow_scale=args.flow_scale)
    else:
        from nvresearch.core.training import load_checkpoint
        from nvresearch.vinterp.models import SuperSloMo

        net = getattr(load_checkpoint(args.checkpoint, map_location="cpu"), "net", None)
        if not isinstance(net, SuperSloMo):
            raise ValueError(f"{args.checkpoint}: not a vinterp checkpoint (no SuperSloMo; paper=vinterp writes one)")
    return net.to(args.device).eval()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    source = Path(args.input).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such video file or folder")
    if source.is_dir():
        frames, in_fps = _folder_frames(source)[0], args.input_fps
    else:
        frames, in_fps = _video_frames(source)
        if in_fps <= 0:
            print(f"warning: {source} reports no frame rate; assuming --input-fps {args.input_fps:g}", file=sys.stderr)
            in_fps = args.input_fps
    fps = args.fps or (in_fps * args.factor if args.keep_duration else in_fps)
    net = _load_net(args)
    multiple = int(getattr(net, "size_multiple", 32))

    def to_tensor(bgr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1).float().to(args.device)

    def to_bgr(rgb: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(rgb.round().byte().permute(1, 2, 0).cpu().numpy()[..., ::-1])

    first, second = next(frames, None), next(frames, None)
    if first is None or second is None:
        raise ValueError(
            f"{source}: {'no frame' if first is None else 'a single frame'}, need at least 2 to interpolate"
        )
    frames = itertools.chain([second], frames)
    h, w = first.shape[:2]
    writer = _Writer(Path(args.output).expanduser(), fps, (w, h))
    n_in = 1
    try:
        writer.write(first)  # the input frames go out as read, bit for bit
        prev, prev_t = first, to_tensor(first)
        with torch.no_grad():
            for frame in frames:
                if frame.shape != prev.shape:
                    raise ValueError(f"{source}: frame {n_in} is {frame.shape[1]}x{frame.shape[0]}, not {w}x{h}")
                cur_t = to_tensor(frame)
                for mid in interpolate_pair(net, prev_t, cur_t, args.factor, multiple):
                    writer.write(to_bgr(mid))
                writer.write(frame)
                prev, prev_t, n_in = frame, cur_t, n_in + 1
    finally:
        writer.close()
    print(
        f"wrote {args.output}: {writer.count} frames ({n_in} input frames x{args.factor}), {w}x{h}, {fps:g} fps "
        f"({writer.count / fps:.2f} s; input {n_in / in_fps:.2f} s at {in_fps:g} fps)"
    )
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as err:  # unreadable inputs or checkpoint: a message, not a traceback
        sys.exit(f"error: {err}")
