"""The sequential knowledge editors, one paper to a file, over an edit stream and its protocol.

- `base.py`: what every editor shares (`EditMethod`: the edit stream, the protocol, the preparation before
  the first edit, the key covariance, state), the capture hooks and the subject's position;
- `subspace.py`: the linear algebra of bases and projections (pure functions);
- `ft_l.py`: FT-L, plain sequential fine-tuning of the edited matrices (`ft_l`);
- `oedit.py`: O-Edit and O-Edit+, FT-L with every gradient projected off the earlier edits and the model's
  knowledge (`oedit`);
- `alphaedit.py`: AlphaEdit, a closed-form edit in the null space of the model's knowledge (`alphaedit`).

The registry (lit_knowledge/methods/__init__.py) imports a module only when its method runs, and this file
imports none of them. See docs/oedit.md.
"""
