"""Export the BGE-M3 encoder (XLMRobertaModel -> last_hidden_state) of a model folder to ONNX.

Only the encoder is exported: the dense head is the CLS row, the sparse and ColBERT heads
are one small Linear each (1024->1, 1024->1024), negligible next to 24 layers.

    /work/venv/bin/python Benchmarks/export_onnx.py \
        [--model Fixtures/generated/bge-m3-full-random] [--out Benchmarks/work/bge-m3.onnx]

The float32 weights are 2.27 GB, over protobuf's 2 GB limit, so they go to an external
data file next to the .onnx (bge-m3.onnx.data). Uses the TorchScript exporter (dynamo=False),
opset 17, dynamic batch and sequence axes; checks the output against PyTorch at the end.
"""
import argparse, os, shutil, tempfile, time

import numpy as np
import torch
from transformers import XLMRobertaModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          return_dict=True).last_hidden_state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "Fixtures/generated/bge-m3-full-random"))
    ap.add_argument("--out", default=os.path.join(HERE, "work/bge-m3.onnx"))
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)

    t0 = time.time()
    model = XLMRobertaModel.from_pretrained(args.model, torch_dtype=torch.float32,
                                            attn_implementation="eager", add_pooling_layer=False)
    model.eval()
    enc = Encoder(model).eval()
    ids = torch.tensor([[0, 100, 200, 300, 400, 2], [0, 500, 600, 2, 1, 1]], dtype=torch.long)
    mask = (ids != 1).long()
    tmpdir = tempfile.mkdtemp(prefix="export-", dir=os.path.dirname(args.out))
    tmp = os.path.join(tmpdir, "encoder.onnx")
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            enc, (ids, mask), tmp, dynamo=False, opset_version=args.opset,
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"},
                          "last_hidden_state": {0: "batch", 1: "sequence"}},
            do_constant_folding=True)
    # Re-save with all weights in one external data file (the exporter may scatter them).
    import onnx
    m = onnx.load(tmp, load_external_data=True)
    data_name = os.path.basename(args.out) + ".data"
    for f in (args.out, os.path.join(os.path.dirname(args.out), data_name)):
        if os.path.exists(f):
            os.remove(f)
    onnx.save_model(m, args.out, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    del m
    shutil.rmtree(tmpdir)
    print(f"exported {args.out} (+{data_name}) in {time.time() - t0:.0f} s")

    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    sess = ort.InferenceSession(args.out, so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.inference_mode():
        want = enc(ids, mask).numpy()
    err = float(np.abs(got - want)[mask.numpy().astype(bool)].max())
    print(f"max |onnx - torch| over real tokens: {err:.3g}")
    assert err < 1e-3, err


if __name__ == "__main__":
    main()
