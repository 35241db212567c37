"""``s2vnet-serve --config-file ... --weights ... [--data-root DIR] [--host 127.0.0.1] [--port 8000]``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from pathlib import Path

from s2vnet.config import resolve_device
from s2vnet.errors import InputError, cli_errors

__all__ = ["main"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    """Fail with one line before loading the model when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as err:
            raise InputError(f"{host}:{port}", f"cannot listen there ({err.strerror})") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Serve the S2VNet viewer: a local web page for automatic segmentation and click-based refinement."
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="checkpoint (model_final.pth)")
    parser.add_argument("--data-root", help="folder whose scans may be opened by path (default: uploads only)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else exposes patient data to the network)",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--access-log", action="store_true", help="log every request (URLs carry session ids)")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs (e.g. SERVE.MAX_UPLOAD_MB 512)"
    )
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import uvicorn

    from s2vnet.inference.api import Predictor
    from s2vnet.serve.app import LOOPBACK_HOSTS, create_app

    _check_port_free(args.host, args.port)
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise InputError(args.data_root, "--data-root is not a folder")
    device = resolve_device(args.device)
    predictor = Predictor.from_files(args.config_file, args.weights, args.opts, device)
    loopback = _is_loopback(args.host)
    allowed = (
        LOOPBACK_HOSTS if loopback else (None if args.host in ("0.0.0.0", "::") else LOOPBACK_HOSTS + (args.host,))
    )
    app = create_app(predictor, args.data_root, allowed)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    if not loopback:
        logging.getLogger("s2vnet.serve").warning(
            "listening on %s: anyone who can reach this address can open scans and read segmentations", args.host
        )
    print(f"S2VNet viewer: http://{shown}:{args.port}/   (Ctrl+C stops it)", flush=True)
    uvicorn.run(app, host=args.host.strip("[]"), port=args.port, log_level="info", access_log=args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
