import pytest
import torch
import torch.nn as nn
import torch_pruning as tp
from nets import NETS, hook_count

from lightning_mcuprune.graph import GraphError, UnsupportedOpError, trace_graph
from lightning_mcuprune.resources import ResourceModel


def build(name):
    factory, shape = NETS[name]
    torch.manual_seed(0)
    return factory().eval(), torch.randn(2, *shape)


@pytest.mark.parametrize("name", list(NETS))
def test_macs_and_params_equal_hook_counts(name):
    model, x = build(name)
    g = trace_graph(model, x)
    rm = ResourceModel(g, "mps2-an386")
    r = rm.evaluate(g.dense_counts)
    assert r.macs.item() == hook_count(model, x)
    assert r.params.item() == sum(p.numel() for p in model.parameters())


def test_mobilenet_v2_matches_published_counts():
    from lightning_mcuprune.examples import zoo
    g = trace_graph(zoo.mobilenet_v2(), torch.randn(1, 3, 224, 224))
    r = ResourceModel(g).evaluate(g.dense_counts)
    assert int(r.macs.item()) == 300_774_272          # 300.8M MACs (Sandler et al.; thop)
    assert int(r.params.item()) == 3_504_872          # torchvision mobilenet_v2


def test_fusion_and_aliases():
    model, x = build("f_cnn")
    g = trace_graph(model, x)
    assert [op.type for op in g.ops] == ["conv2d", "max_pool", "conv2d", "avg_pool", "dense", "dense"]
    conv = g.ops[0]
    assert conv.bn_params == 2 and conv.activation == "relu" and len(conv.nodes) == 3
    # flatten/view/dropout make no buffers: 1 input + 6 op outputs
    assert len(g.buffers) == 7


def _tp_out_modules(model, x, module):
    """Dense convs and linears whose output channels Torch-Pruning prunes together with `module`'s."""
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
    fn = tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels
    out = set()
    for dep, _ in dg.get_pruning_group(module, fn, idxs=[0]):
        m = dep.target.module
        if dg.is_out_channel_pruning_fn(dep.handler) and isinstance(m, (nn.Conv2d, nn.Linear)) and getattr(m, "groups", 1) == 1:
            out.add(m)
    return out


@pytest.mark.parametrize("name", ["plain_cnn", "resnet8", "mobilenet_v2_tiny", "ds_cnn", "inception", "f_resnet8", "f_mobilenet"])
def test_channel_groups_agree_with_torch_pruning(name):
    """Our coupling equals Torch-Pruning's DependencyGraph: the same convs/linears prune their outputs together."""
    model, x = build(name)
    g = trace_graph(model, x)
    mods = dict(model.named_modules())
    ops = {op.name: op for op in g.ops}
    for grp in g.groups:
        if not grp.prunable:
            continue
        ours = {mods[ops[p].module] for p in grp.producers}
        assert ours, f"group {grp.id} has no producer"
        theirs = _tp_out_modules(model, x, next(iter(ours)))
        assert ours == theirs, f"group {grp.id}: ours {ours} vs torch-pruning {theirs}"


def test_residual_add_unites_groups():
    model, x = build("resnet8")
    g = trace_graph(model, x)
    stem = next(gr for gr in g.groups if "0.0" in [op.module for op in g.ops if op.name in gr.producers])
    producers = {op.module for op in g.ops if op.name in stem.producers}
    assert producers == {"0.0", "1.conv2"}         # stem and the first block's last conv, joined by the add
    sc = [gr for gr in g.groups if any(op.module == "2.shortcut.0" for op in g.ops if op.name in gr.producers)][0]
    assert {op.module for op in g.ops if op.name in sc.producers} == {"2.conv2", "2.shortcut.0"}


def test_input_output_and_excluded_groups_are_fixed():
    model, x = build("plain_cnn")
    g = trace_graph(model, x, exclude=["3.0"])
    reasons = {gr.reason for gr in g.groups if not gr.prunable}
    assert "network input" in reasons and "network output" in reasons and "excluded module 3.0" in reasons
    assert len(g.prunable) == 3


def test_grouped_and_conv1d_counted_but_fixed():
    model, x = build("grouped")
    g = trace_graph(model, x)
    reasons = [gr.reason for gr in g.groups if not gr.prunable]
    assert any("grouped conv" in r for r in reasons)
    assert g.ops[2].type == "conv2d" and g.ops[2].kernel_elems == 3   # the Conv1d


def test_cat_segments_and_se_mul():
    model, x = build("f_inception")
    g = trace_graph(model, x)
    cat = next(op for op in g.ops if op.type == "concat")
    assert len(cat.out_channels) == 3
    fc = g.ops[-1]
    assert len(fc.in_channels) == 3 and fc.type == "dense"
    model, x = build("f_se")
    g = trace_graph(model, x)
    mul = next(op for op in g.ops if op.type == "mul")
    stem = g.ops[0]
    assert mul.out_channels == stem.out_channels
    # the SE's fc2 output is united with the stem's channels
    fc2 = next(op for op in g.ops if op.module == "fc2")
    assert fc2.out_channels == stem.out_channels


class _Upsampler(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x):
        return self.up(self.c(x))


class _MatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        y = self.c(x).flatten(2)
        return torch.matmul(y, y.transpose(1, 2))


class _BatchDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(self.c(x).view(1, -1))


class _ControlFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.c(x)
        return x


def test_unsupported_module_is_named_with_its_path():
    with pytest.raises(UnsupportedOpError) as e:
        trace_graph(_Upsampler(), torch.randn(1, 1, 8, 8))
    assert "Upsample at 'up'" in str(e.value) and "supported:" in str(e.value)


def test_unsupported_function_is_named():
    with pytest.raises(UnsupportedOpError) as e:
        trace_graph(_MatMul(), torch.randn(1, 1, 8, 8))
    assert "transpose" in str(e.value) or "matmul" in str(e.value)


def test_batch_dependent_shapes_are_refused():
    with pytest.raises(GraphError) as e:
        trace_graph(_BatchDependent(), torch.randn(1, 1, 8, 8))
    assert "batch" in str(e.value) and "flatten(1)" in str(e.value)


def test_untraceable_control_flow_is_explained():
    with pytest.raises(GraphError, match="control flow"):
        trace_graph(_ControlFlow(), torch.randn(1, 1, 8, 8))


def test_bad_arguments():
    with pytest.raises(GraphError, match="nn.Module"):
        trace_graph(lambda x: x, torch.randn(1, 1, 4, 4))
    with pytest.raises(GraphError, match="example_input"):
        trace_graph(nn.Conv2d(1, 1, 1), [1, 2, 3])
