"""pagefs: a host-guest shared filesystem on the host's own file pages.

Sub-packages (each mapped from a top-level folder of the source tree):

- ``pagefs.spec``        -- the executable specification (``spec/``)
- ``pagefs.proofs``      -- z3 proofs and CrossHair checks (``proofs/``)
- ``pagefs.impl``        -- the host daemon and guest driver (``impl/``)
- ``pagefs.conformance`` -- the conformance suite (``conformance/``)

and, above proofs and conformance both, ``pagefs.verify``: the ``make verify`` driver.
"""

__version__ = "0.1.0"
