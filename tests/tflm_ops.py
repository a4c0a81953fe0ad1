"""Run one int8 TFLite builtin (LOGISTIC, HARD_SWISH, ...) on every int8 input value with TensorFlow Lite Micro's
own interpreter (`tflite-micro`), for comparing our int8 arithmetic with TFLM's bit for bit. The model is
written here with the `tflite` schema bindings: one op, input and output int8 [1, 256]."""
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


def unary_model(op: int, in_scale, in_zp, out_scale, out_zp, n: int = 256) -> bytes:
    """A .tflite with one builtin `op` (tflite.BuiltinOperator.*) from int8 [1, n] to int8 [1, n]."""
    b = flatbuffers.Builder(1024)
    tensors = []
    for name, (s, z) in (("x", (in_scale, in_zp)), ("y", (out_scale, out_zp))):
        nm = b.CreateString(name)
        shape = _ivec(b, tflite.TensorStartShapeVector, [1, n])
        q = _quant(b, s, z)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, tflite.TensorType.INT8)
        tflite.TensorAddBuffer(b, 0)
        tflite.TensorAddName(b, nm)
        tflite.TensorAddQuantization(b, q)
        tensors.append(tflite.TensorEnd(b))
    ins, outs = _ivec(b, tflite.OperatorStartInputsVector, [0]), _ivec(b, tflite.OperatorStartOutputsVector, [1])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, ins)
    tflite.OperatorAddOutputs(b, outs)
    oper = tflite.OperatorEnd(b)
    tflite.SubGraphStartTensorsVector(b, 2)
    for t in reversed(tensors):
        b.PrependUOffsetTRelative(t)
    tv = b.EndVector()
    tflite.SubGraphStartOperatorsVector(b, 1)
    b.PrependUOffsetTRelative(oper)
    ov = b.EndVector()
    sg_in, sg_out = _ivec(b, tflite.SubGraphStartInputsVector, [0]), _ivec(b, tflite.SubGraphStartOutputsVector, [1])
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


def tflm_table(op: int, in_scale, in_zp, out_scale, out_zp) -> np.ndarray:
    """TFLM's int8 output for every int8 input -128..127 (entry i for input i - 128)."""
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(unary_model(op, in_scale, in_zp, out_scale, out_zp), arena_size=16384)
    it.set_input(np.arange(-128, 128, dtype=np.int8).reshape(1, 256), 0)
    it.invoke()
    return np.asarray(it.get_output(0), dtype=np.int8).reshape(256)
