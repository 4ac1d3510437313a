"""all-MiniLM-L6-v2 sentence embeddings through hwsim's integer program (int8 and int4 weights).

Linear layers and both attention matmuls run bit-accurately on integer codes (8-bit inputs);
LayerNorm, GELU and softmax run in float32 on a vector unit; the residual stream is 16-bit
(see hwsim.minilm_flow). Two calibration steps move BERT's outlier channels out of the 8-bit
tensors: SmoothQuant on the LayerNorm outputs that feed linears (quant.calibrate.smooth) and
the FFN blocks' outlier hidden channels in a group of their own (quant.calibrate.split_outliers);
each chooses its strength on held-out calibration sentences, and the row "none" leaves them out.
Prints the mean / min cosine similarity of the sentence embeddings to the float model over 300
generated sentences (calibration: 32 other sentences).

    python examples/minilm_int8.py            # ~3 min on 2 cores
"""
import time

from hwsim.minilm_flow import minilm_cosines, quantize_minilm

ROWS = ((8, 16, True), (8, 16, False), (4, 16, True), (8, 8, True))  # (weights, residual, steps)

print(f"{'weights':>8} {'act':>4} {'residual':>8} {'steps':>13} {'sentences':>9} "
      f"{'int vs float':>13} {'(min)':>7} {'fake vs float':>13} {'int vs fake':>11} {'time s':>7}")
for weight_bits, residual_bits, steps in ROWS:
    t0 = time.perf_counter()
    run = quantize_minilm(weight_bits=weight_bits, residual_bits=residual_bits, smooth=steps,
                          split_outliers=steps)
    table = minilm_cosines(run)
    print(f"{f'int{weight_bits}':>8} {'int8':>4} {f'int{residual_bits}':>8} "
          f"{'smooth+split' if steps else 'none':>13} {len(table):>9} "
          f"{table['int_vs_float'].mean():13.4f} {table['int_vs_float'].min():7.4f} "
          f"{table['fake_vs_float'].mean():13.4f} {table['int_vs_fake'].mean():11.4f} "
          f"{time.perf_counter() - t0:7.1f}")
