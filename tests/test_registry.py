"""The name -> object registry."""

from __future__ import annotations

import pytest

from lit_knowledge.errors import UserError
from lit_knowledge.registry import Registry


@pytest.fixture
def reg():
    r = Registry("widget")

    @r.register("alpha")
    class Alpha:
        pass

    @r.register("beta_gamma")
    def beta_gamma():
        return 42

    return r


def test_register_returns_the_object_and_get_finds_it(reg):
    obj = object()
    assert reg.register("delta")(obj) is obj
    assert reg.get("delta") is obj
    assert reg.get("alpha").__name__ == "Alpha"
    assert reg.get("beta_gamma")() == 42
    assert "alpha" in reg and "nope" not in reg


def test_double_registration_is_an_error(reg):
    with pytest.raises(ValueError, match="'alpha' is registered twice"):
        reg.register("alpha")(object())
    assert reg.get("alpha").__name__ == "Alpha"  # the first one stays


def test_typo_suggests_the_nearest_name(reg):
    with pytest.raises(UserError) as info:
        reg.get("alpah")
    msg = str(info.value)
    assert "\n" not in msg
    assert "unknown widget 'alpah'" in msg
    assert "(did you mean alpha?)" in msg
    assert "choose one of: alpha, beta_gamma" in msg


def test_unknown_name_with_nothing_close(reg):
    with pytest.raises(UserError) as info:
        reg.get("zzzzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "choose one of: alpha, beta_gamma" in str(info.value)


def test_names_are_sorted(reg):
    reg.register("aardvark")(1)
    assert reg.names() == ["aardvark", "alpha", "beta_gamma"]
    assert Registry("empty").names() == []


def test_registries_are_independent():
    a, b = Registry("a"), Registry("b")
    a.register("x")(1)
    b.register("x")(2)  # same name in another registry is fine
    assert a.get("x") == 1 and b.get("x") == 2


def test_method_registry_holds_the_baselines():
    from lit_knowledge.methods import METHODS

    assert {"base", "in_context", "ft_context", "ft_qa", "rag_bm25", "pretrain"} <= set(METHODS.names())
    with pytest.raises(UserError, match="did you mean rag_bm25"):
        METHODS.get("rag_bm52")


def test_a_lazy_entry_is_imported_only_when_asked_for(tmp_path, monkeypatch):
    import sys

    (tmp_path / "lazy_widgets_mod.py").write_text("class Widget:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = Registry("widget")
    r.register_lazy("widget", "lazy_widgets_mod:Widget")
    assert r.names() == ["widget"] and "widget" in r
    with pytest.raises(UserError, match="did you mean widget"):
        r.get("widgte")
    assert "lazy_widgets_mod" not in sys.modules  # listing and typos import nothing
    assert r.get("widget").__name__ == "Widget" and "lazy_widgets_mod" in sys.modules
    assert r.get("widget") is sys.modules["lazy_widgets_mod"].Widget
    with pytest.raises(ValueError, match="twice"):
        r.register_lazy("widget", "lazy_widgets_mod:Widget")
    sys.modules.pop("lazy_widgets_mod")
