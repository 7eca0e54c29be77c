#!/usr/bin/python3
"""Make examples/linear.onnx, the bundled example model.

The classic export recipe: a PyTorch Linear(10, 1) followed by ReLU,
exported with opset 12, input "input" with a dynamic batch axis
"batch_size", output "output", constant folding on.  Weights come from a
fixed seed so the file is reproducible.  Also writes the weights next to it
(linear.weights.npz) so tests can compare without running PyTorch.

Run with Debian's Python (python3-torch, python3-onnx):
    /usr/bin/python3 examples/make_example.py [OUT.onnx]
"""
import os
import sys

import numpy as np
import torch


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(10, 1)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc(x))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "linear.onnx")
    torch.manual_seed(0)
    model = Classifier().eval()
    dummy = torch.randn(1, 10)
    torch.onnx.export(model, dummy, out,
                      export_params=True,
                      opset_version=12,
                      do_constant_folding=True,
                      input_names=["input"],
                      output_names=["output"],
                      dynamic_axes={"input": {0: "batch_size"},
                                    "output": {0: "batch_size"}})
    np.savez(os.path.splitext(out)[0] + ".weights.npz",
             fc_weight=model.fc.weight.detach().numpy(),
             fc_bias=model.fc.bias.detach().numpy())
    print("wrote", out)


if __name__ == "__main__":
    main()
