"""Run one int8 TFLite builtin (LOGISTIC, HARD_SWISH, MUL, ...) with TensorFlow Lite Micro's own interpreter
(`tflite-micro`), for comparing our int8 arithmetic with TFLM's bit for bit. The one-op model is written here
with the `tflite` schema bindings."""
import flatbuffers
import numpy as np
import tflite


def _ivec(b, start, values):
    start(b, len(values))
    for v in reversed(values):
        b.PrependInt32(int(v))
    return b.EndVector()


def _quant(b, scale, zp):
    tflite.QuantizationParametersStartScaleVector(b, 1)
    b.PrependFloat32(float(scale))
    sv = b.EndVector()
    tflite.QuantizationParametersStartZeroPointVector(b, 1)
    b.PrependInt64(int(zp))
    zv = b.EndVector()
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, sv)
    tflite.QuantizationParametersAddZeroPoint(b, zv)
    return tflite.QuantizationParametersEnd(b)


def op_model(op: int, inputs: list, output: tuple) -> bytes:
    """A .tflite with one builtin `op` (tflite.BuiltinOperator.*): `inputs` [(shape, scale, zp)], `output`
    (shape, scale, zp), all int8 tensors without data (buffer 0)."""
    b = flatbuffers.Builder(1024)
    tensors = []
    for k, (shape, s, z) in enumerate(list(inputs) + [output]):
        nm = b.CreateString(f"t{k}")
        sh = _ivec(b, tflite.TensorStartShapeVector, list(shape))
        q = _quant(b, s, z)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, sh)
        tflite.TensorAddType(b, tflite.TensorType.INT8)
        tflite.TensorAddBuffer(b, 0)
        tflite.TensorAddName(b, nm)
        tflite.TensorAddQuantization(b, q)
        tensors.append(tflite.TensorEnd(b))
    n_in = len(inputs)
    ins = _ivec(b, tflite.OperatorStartInputsVector, list(range(n_in)))
    outs = _ivec(b, tflite.OperatorStartOutputsVector, [n_in])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, ins)
    tflite.OperatorAddOutputs(b, outs)
    oper = tflite.OperatorEnd(b)
    tflite.SubGraphStartTensorsVector(b, len(tensors))
    for t in reversed(tensors):
        b.PrependUOffsetTRelative(t)
    tv = b.EndVector()
    tflite.SubGraphStartOperatorsVector(b, 1)
    b.PrependUOffsetTRelative(oper)
    ov = b.EndVector()
    sg_in = _ivec(b, tflite.SubGraphStartInputsVector, list(range(n_in)))
    sg_out = _ivec(b, tflite.SubGraphStartOutputsVector, [n_in])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddInputs(b, sg_in)
    tflite.SubGraphAddOutputs(b, sg_out)
    tflite.SubGraphAddOperators(b, ov)
    sg = tflite.SubGraphEnd(b)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(op, 127))
    tflite.OperatorCodeAddBuiltinCode(b, op)
    tflite.OperatorCodeAddVersion(b, 1)
    code = tflite.OperatorCodeEnd(b)
    tflite.BufferStart(b)
    buf = tflite.BufferEnd(b)
    vecs = []
    for start, items in ((tflite.ModelStartOperatorCodesVector, [code]), (tflite.ModelStartSubgraphsVector, [sg]),
                         (tflite.ModelStartBuffersVector, [buf])):
        start(b, len(items))
        for it in reversed(items):
            b.PrependUOffsetTRelative(it)
        vecs.append(b.EndVector())
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, vecs[0])
    tflite.ModelAddSubgraphs(b, vecs[1])
    tflite.ModelAddBuffers(b, vecs[2])
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_tflm(model: bytes, *xs) -> np.ndarray:
    """Run a model on TFLite Micro's interpreter with int8 inputs `xs`; its int8 output."""
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(model, arena_size=65536)
    for i, x in enumerate(xs):
        it.set_input(np.asarray(x, dtype=np.int8), i)
    it.invoke()
    return np.asarray(it.get_output(0), dtype=np.int8)


def tflm_table(op: int, in_scale, in_zp, out_scale, out_zp) -> np.ndarray:
    """TFLM's int8 output of a unary op for every int8 input -128..127 (entry i for input i - 128)."""
    model = op_model(op, [((1, 256), in_scale, in_zp)], ((1, 256), out_scale, out_zp))
    return run_tflm(model, np.arange(-128, 128, dtype=np.int8).reshape(1, 256)).reshape(256)


def mean_model(h, w, c, s, z, so, zo) -> bytes:
    """A .tflite with one MEAN over axes (1, 2), keep_dims: int8 [1, h, w, c] -> [1, 1, 1, c] (for comparing
    global average pooling with TFLite Micro: equal bit for bit with quantize's multiplier,
    test_reference_kernels.py::test_global_avg_pool_rounds_as_tflm_mean)."""
    b = flatbuffers.Builder(1024)
    axis_bytes = np.array([1, 2], dtype="<i4").tobytes()
    b.StartVector(1, len(axis_bytes), 16)
    for byte in reversed(axis_bytes):
        b.PrependByte(byte)
    data = b.EndVector()
    tflite.BufferStart(b); tflite.BufferAddData(b, data); abuf = tflite.BufferEnd(b)
    tflite.BufferStart(b); empty = tflite.BufferEnd(b)
    tens = []
    for k, (shape, typ, buf, q) in enumerate([((1, h, w, c), tflite.TensorType.INT8, 0, (s, z)), ((2,), tflite.TensorType.INT32, 1, None),
                                             ((1, 1, 1, c), tflite.TensorType.INT8, 0, (so, zo))]):
        nm = b.CreateString(f"t{k}"); sh = _ivec(b, tflite.TensorStartShapeVector, list(shape))
        qq = _quant(b, *q) if q else None
        tflite.TensorStart(b); tflite.TensorAddShape(b, sh); tflite.TensorAddType(b, typ); tflite.TensorAddBuffer(b, buf)
        tflite.TensorAddName(b, nm)
        if qq: tflite.TensorAddQuantization(b, qq)
        tens.append(tflite.TensorEnd(b))
    tflite.ReducerOptionsStart(b); tflite.ReducerOptionsAddKeepDims(b, True); opts = tflite.ReducerOptionsEnd(b)
    ins = _ivec(b, tflite.OperatorStartInputsVector, [0, 1]); outs = _ivec(b, tflite.OperatorStartOutputsVector, [2])
    tflite.OperatorStart(b); tflite.OperatorAddOpcodeIndex(b, 0); tflite.OperatorAddInputs(b, ins); tflite.OperatorAddOutputs(b, outs)
    tflite.OperatorAddBuiltinOptionsType(b, tflite.BuiltinOptions.ReducerOptions); tflite.OperatorAddBuiltinOptions(b, opts)
    oper = tflite.OperatorEnd(b)
    tflite.SubGraphStartTensorsVector(b, 3)
    for t in reversed(tens): b.PrependUOffsetTRelative(t)
    tv = b.EndVector()
    tflite.SubGraphStartOperatorsVector(b, 1); b.PrependUOffsetTRelative(oper); ov = b.EndVector()
    si = _ivec(b, tflite.SubGraphStartInputsVector, [0]); so_ = _ivec(b, tflite.SubGraphStartOutputsVector, [2])
    tflite.SubGraphStart(b); tflite.SubGraphAddTensors(b, tv); tflite.SubGraphAddInputs(b, si); tflite.SubGraphAddOutputs(b, so_)
    tflite.SubGraphAddOperators(b, ov); sg = tflite.SubGraphEnd(b)
    tflite.OperatorCodeStart(b); tflite.OperatorCodeAddDeprecatedBuiltinCode(b, 40); tflite.OperatorCodeAddBuiltinCode(b, 40)
    tflite.OperatorCodeAddVersion(b, 1); code = tflite.OperatorCodeEnd(b)
    vecs = []
    for start, items in ((tflite.ModelStartOperatorCodesVector, [code]), (tflite.ModelStartSubgraphsVector, [sg]),
                         (tflite.ModelStartBuffersVector, [empty, abuf])):
        start(b, len(items))
        for it in reversed(items): b.PrependUOffsetTRelative(it)
        vecs.append(b.EndVector())
    tflite.ModelStart(b); tflite.ModelAddVersion(b, 3); tflite.ModelAddOperatorCodes(b, vecs[0]); tflite.ModelAddSubgraphs(b, vecs[1])
    tflite.ModelAddBuffers(b, vecs[2]); b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
