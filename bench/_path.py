"""Import this first in every script here.

The scripts are named for what they measure, and two of those names are taken: ``token`` is a
standard-library module (``inspect`` and ``dataclasses`` import it) and ``audit`` is a
casebroker package. Python puts a script's folder first on the import path, so this takes the
folder off, imports the real modules, and puts the folder back at the end, where the scripts
still find ``_common`` and each other.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import token  # noqa: F401

import audit  # noqa: F401

sys.path.append(_HERE)
