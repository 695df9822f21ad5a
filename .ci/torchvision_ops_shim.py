"""For MONAI Label's test environment only: PyPI's torchvision cannot load its compiled operators
beside the CPU build of PyTorch this machine installs, and its import then fails on
``torch.library.register_fake("torchvision::nms")`` ("operator torchvision::nms does not exist").
Imported from a ``.pth`` file, this defines the schemas of the two operators torchvision
registers unconditionally, just before torchvision is first imported (nothing is imported
before that); their kernels stay missing, and nothing here calls them."""

import importlib.abc
import sys

SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        global _library
        if name == "torchvision" and _library is None:
            sys.meta_path.remove(self)
            import torch

            _library = torch.library.Library("torchvision", "FRAGMENT")
            for schema in SCHEMAS:
                _library.define(schema)
        return None


sys.meta_path.insert(0, _BeforeTorchvision())
