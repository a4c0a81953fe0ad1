"""Unit tests of the pure pruning pieces on their own: mask sites, the plan, physical channel removal."""
import torch
import torch.nn as nn

from lightning_mcuprune.graph import trace_graph
from lightning_mcuprune.pruning.masks import mask_sites
from lightning_mcuprune.pruning.plan import make_plan
from lightning_mcuprune.pruning.removal import remove_channels


def _chain():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


class _Twice(nn.Module):
    """One conv called twice on the same channels: its input group cannot carry a per-call mask."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 6, 1)
        self.b = nn.Conv2d(6, 6, 1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        y = self.a(x)
        return self.head(self.b(self.b(y)))


def test_mask_sites_are_the_consumers_of_prunable_groups():
    g = trace_graph(_chain(), torch.zeros(1, 1, 8, 8))
    sites, unmaskable = mask_sites(g)
    assert [path for path, _ in sites] == ["3", "7"] and unmaskable == {}
    conv1_group = sites[0][1][0][0]
    assert g.groups[conv1_group].size == 8 and g.groups[conv1_group].producers


def test_a_module_called_twice_makes_its_groups_unmaskable():
    g = trace_graph(_Twice(), torch.zeros(1, 1, 4, 4))
    sites, unmaskable = mask_sites(g)
    assert unmaskable and all("called more than once" in r for r in unmaskable.values())
    assert all(path != "b" for path, _ in sites)


def test_plan_lists_prunable_groups_and_leaves_the_traced_groups_alone():
    plan = make_plan(_Twice(), torch.zeros(1, 1, 4, 4))
    assert "a" not in plan.producers   # a's channels are read by b, which runs twice
    reasons = {g.reason for g in plan.graph.groups if not g.prunable}
    assert any("called more than once" in r for r in reasons)
    fresh = trace_graph(_Twice(), torch.zeros(1, 1, 4, 4))      # the trace itself knows nothing of the plan
    assert not any("called more than once" in g.reason for g in fresh.groups)
    assert plan.signature() == {"producers": plan.producers, "dense": plan.dense_channels}


def test_plan_keeps_two_channels_under_a_depthwise_conv():
    net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 2, 1))
    plan = make_plan(net, torch.zeros(1, 1, 5, 5))
    assert plan.producers[0] == "0" and plan.floors[0] == 2


def test_removing_channels_equals_zeroing_their_readers():
    torch.manual_seed(0)
    net = _chain().eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ref = _chain().eval()
        ref.load_state_dict(net.state_dict())
        ref[3].weight[:, [1, 5]] = 0.0
        expected = ref(x)
    remove_channels(net, torch.zeros(1, 1, 8, 8), {"0": [1, 5]})
    assert net[0].out_channels == 6 and net[1].num_features == 6 and net[3].in_channels == 6
    torch.testing.assert_close(net(x), expected)
