"""onnxruntime's dynamic int8 quantisation of the exported encoder, the peer for
`m3search --precision int8`: Benchmarks/work/bge-m3.onnx → Benchmarks/work/bge-m3-int8.onnx.

    /work/venv/bin/python Benchmarks/quantize_onnx.py

quantize_dynamic with its defaults for transformer encoders: MatMul weights int8 (signed,
per-tensor, as ort's dynamic quantisation does unless per_channel is asked for), activations
quantised to uint8 per tensor at run time.  --per-channel quantises weights per output channel.
"""
import argparse, os, time
from onnxruntime.quantization import QuantType, quantize_dynamic

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "work/bge-m3.onnx")
DST = os.path.join(HERE, "work/bge-m3-int8.onnx")

ap = argparse.ArgumentParser()
ap.add_argument("--per-channel", action="store_true")
args = ap.parse_args()
t = time.perf_counter()
quantize_dynamic(SRC, DST, weight_type=QuantType.QInt8, per_channel=args.per_channel,
                 op_types_to_quantize=["MatMul"], use_external_data_format=True)
print(f"wrote {DST} in {time.perf_counter() - t:.0f} s")
