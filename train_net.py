#!/usr/bin/env python
"""Train S2VNet, Detectron2-style.

    python train_net.py --config-file configs/btcv/s2vnet_swinb.yaml --num-gpus 4
    python train_net.py --config-file configs/demo/s2vnet_r18_demo.yaml            # CPU demo
    python train_net.py --config-file ... --resume                                 # continue from last_checkpoint
    python train_net.py --config-file ... SOLVER.MAX_ITER 100 OUTPUT_DIR out/x     # overrides

    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/x/model_final.pth

On a machine without GPUs, ``--num-gpus N`` starts N CPU processes that train with the gloo backend.
Evaluation (``--eval-only``, and every ``TEST.EVAL_PERIOD`` iterations) runs the automatic and
simulated-click protocol of ``TEST.S2VNET.*`` on ``DATASETS.TEST`` and writes metrics.json,
per_case.csv, the DSC-vs-clicks plot, predictions and montages to ``OUTPUT_DIR/inference/<dataset>``.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import s2vnet  # noqa: F401  (first: silences torch's jit deprecation notice before Detectron2 imports; registers components)

# isort: split
import detectron2.engine.defaults
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, create_ddp_model, default_argument_parser, default_setup, launch
from detectron2.evaluation import DatasetEvaluator, print_csv_format
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from s2vnet.config import setup_cfg
from s2vnet.data import build_volume_train_loader
from s2vnet.errors import InputError, cli_errors
from s2vnet.evaluation.runner import evaluate_dataset
from s2vnet.inference.checkpoint import load_weights
from s2vnet.pretrained import check_pretrained
from s2vnet.utils.atomic import remove_leftovers
from s2vnet.utils.checkpointer import AtomicCheckpointer

OPTIMIZERS = {"ADAMW": torch.optim.AdamW, "SGD": torch.optim.SGD}


def full_model_clipping(optimizer_cls: type, max_norm: float) -> type:
    """An optimizer class that clips the gradient norm of all parameters together before each step."""

    class FullModelClipped(optimizer_cls):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            return super().step(closure=closure)

    FullModelClipped.__name__ = f"FullModelClipped{optimizer_cls.__name__}"
    return FullModelClipped


def ddp_wrapper(cfg: CfgNode) -> Callable[..., torch.nn.Module]:
    """``create_ddp_model`` with ``MODEL.S2VNET.FIND_UNUSED_PARAMETERS``; ``device_ids=None`` for a CPU (gloo) model."""
    device_ids = [comm.get_local_rank()] if cfg.MODEL.DEVICE.startswith("cuda") else None
    return functools.partial(
        create_ddp_model, device_ids=device_ids, find_unused_parameters=cfg.MODEL.S2VNET.FIND_UNUSED_PARAMETERS
    )


def without_amp_on_cpu(cfg: CfgNode) -> CfgNode:
    """``cfg``, or a copy with ``SOLVER.AMP.ENABLED`` off (and a warning) when the model runs on the CPU."""
    if not cfg.SOLVER.AMP.ENABLED or cfg.MODEL.DEVICE.startswith("cuda"):
        return cfg
    logging.getLogger(__name__).warning("SOLVER.AMP.ENABLED is ignored on the CPU")
    frozen, cfg = cfg.is_frozen(), cfg.clone()
    cfg.defrost()
    cfg.SOLVER.AMP.ENABLED = False
    if frozen:
        cfg.freeze()
    return cfg


class Trainer(DefaultTrainer):
    """DefaultTrainer with the volume loader, AdamW + backbone multiplier, volume evaluation, and CPU-aware DDP/AMP."""

    def __init__(self, cfg: CfgNode) -> None:
        # DefaultTrainer.__init__ runs unchanged (worker auto-scaling, hooks, checkpointer) but hard-codes two
        # choices: create_ddp_model(model, broadcast_buffers=False), which gives DDP device_ids=[local rank]
        # (rejected for a CPU/gloo model) and never finds unused parameters, and AMPTrainer whenever
        # SOLVER.AMP.ENABLED (it needs CUDA). So AMP is turned off on the CPU, and Detectron2's module-level
        # create_ddp_model is swapped for the config-aware one only while the parent constructor runs; so is its
        # DetectionCheckpointer, for one that writes checkpoints atomically (a kill never leaves a partial file).
        with (
            mock.patch.object(detectron2.engine.defaults, "create_ddp_model", ddp_wrapper(cfg)),
            mock.patch.object(detectron2.engine.defaults, "DetectionCheckpointer", AtomicCheckpointer),
        ):
            super().__init__(without_amp_on_cpu(cfg))

    @classmethod
    def build_train_loader(cls, cfg):
        return build_volume_train_loader(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        multiplier = cfg.SOLVER.BACKBONE_MULTIPLIER
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            lr_factor_func=lambda name: multiplier if name.startswith("backbone.") else 1.0,
        )
        if cfg.SOLVER.OPTIMIZER not in OPTIMIZERS:
            raise InputError(
                "SOLVER.OPTIMIZER", f"unknown optimizer '{cfg.SOLVER.OPTIMIZER}'; known: {', '.join(OPTIMIZERS)}"
            )
        optimizer_cls = OPTIMIZERS[cfg.SOLVER.OPTIMIZER]
        clip = cfg.SOLVER.CLIP_GRADIENTS
        if clip.ENABLED and clip.CLIP_TYPE == "full_model":
            optimizer_cls = full_model_clipping(optimizer_cls, clip.CLIP_VALUE)
        else:
            optimizer_cls = maybe_add_gradient_clipping(cfg, optimizer_cls)
        extra = {"momentum": cfg.SOLVER.MOMENTUM} if optimizer_cls is torch.optim.SGD else {}
        return optimizer_cls(params, lr=cfg.SOLVER.BASE_LR, **extra)

    @classmethod
    def test(
        cls, cfg: CfgNode, model: torch.nn.Module, evaluators: DatasetEvaluator | list[DatasetEvaluator] | None = None
    ) -> OrderedDict:
        """Evaluate on every ``cfg.DATASETS.TEST`` dataset with the volume protocol (see the module docstring).

        Args:
            evaluators: as in Detectron2, one evaluator per ``DATASETS.TEST`` dataset, in the same order. Each
                gets ``process(catalog dicts, outputs)`` with ``outputs`` ``[{"automatic": (z, y, x),
                "rounds": [(z, y, x), ...]}]``, labels on the input grid (the contract of
                :class:`s2vnet.evaluation.evaluator.VolumeSegEvaluator`). None: one ``VolumeSegEvaluator``
                per dataset, configured by ``TEST.S2VNET`` and writing into ``OUTPUT_DIR/inference/<dataset>``.

        Returns:
            ``{dataset name: evaluator.evaluate()}``.
        """
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} datasets in DATASETS.TEST")
        model = model.module if isinstance(model, DistributedDataParallel) else model
        was_training = model.training
        results = OrderedDict()
        for i, name in enumerate(cfg.DATASETS.TEST):
            evaluator = None if evaluators is None else evaluators[i]
            results[name] = evaluate_dataset(cfg, model, name, Path(cfg.OUTPUT_DIR) / "inference" / name, evaluator)
            if comm.is_main_process():
                print_csv_format(results[name])
        model.train(was_training)
        return results


def check_classes(cfg) -> None:
    """The config's class count/names must match every training dataset's metadata."""
    s2v = cfg.MODEL.S2VNET
    for name in cfg.DATASETS.TRAIN:
        classes = MetadataCatalog.get(name).get("stuff_classes")
        if classes is None:
            raise InputError(name, "no such registered dataset")
        if len(classes) != s2v.NUM_CLASSES or (s2v.CLASS_NAMES and list(s2v.CLASS_NAMES) != list(classes)):
            raise InputError(
                name, f"has classes {classes}, but the config says {s2v.NUM_CLASSES}: {list(s2v.CLASS_NAMES)}"
            )


def setup(args):
    cfg = setup_cfg(args.config_file, args.opts)
    cfg.defrost()
    if not torch.cuda.is_available() and cfg.MODEL.DEVICE.startswith("cuda"):
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    check_classes(cfg)
    default_setup(cfg, args)
    if comm.is_main_process():  # .tmp-* files of writes a killed run did not finish (checkpoints, evaluation)
        remove_leftovers(cfg.OUTPUT_DIR, recursive=False)
        remove_leftovers(Path(cfg.OUTPUT_DIR) / "inference")
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="s2vnet")
    check_pretrained(cfg, training=not args.eval_only)
    return cfg


@cli_errors
def main(args) -> int:
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        load_weights(model, cfg.MODEL.WEIGHTS)
        Trainer.test(cfg, model)
        return 0
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return 0


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    sys.exit(
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
        or 0
    )
