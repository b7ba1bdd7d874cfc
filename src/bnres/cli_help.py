"""``bnres fit --help`` short enough to read.

jsonargparse lists every known subclass of a class-typed option: for ``--model.net`` (an ``nn.Module``)
that is every ``torch.nn.Module`` subclass, about 670 lines, while the networks bnres builds are picked by
name. :class:`HelpFormatter` keeps the first few of each such list (``--KEY.help CLASS`` shows any
class in full), prints a one-line usage instead of a hundred-option one, and marks the network
arguments taken from the data module as such instead of "required". :class:`ShortHelp` (mixed into
the CLI's parser) uses it and ends every help with the network names and the derived arguments.
"""

from __future__ import annotations

import re
from argparse import Action
from typing import Any

from jsonargparse import DefaultHelpFormatter

#: the network's arguments the CLI links from the data module (bnres.cli: parser.link_arguments)
DERIVED_FROM_DATA = ("in_channels", "num_classes", "image_size")
MAX_SUBCLASSES = 4
_SUBCLASSES = re.compile(r", known subclasses: ([^()]*)\)$", re.S)


def epilog() -> str:
    from bnres.models import BUILDERS

    return (
        f"networks (--model.net.name): {', '.join(BUILDERS)}; their options: --model.net.help bnres.cli.Network. "
        f"Derived from the data module, never given: {', '.join(DERIVED_FROM_DATA)}. "
        "Example: bnres fit --config conf/cli/resnet18.yaml --model.net.bn false"
    )


class HelpFormatter(DefaultHelpFormatter):
    def _get_help_string(self, action: Action) -> str:
        text = super()._get_help_string(action)
        if action.dest.rsplit(".", 1)[-1] in DERIVED_FROM_DATA and ".net." in f".{action.dest}":
            text = text.replace("(required, ", "(derived from the data module, ")
        match = _SUBCLASSES.search(text)
        if match:
            names = [n.strip() for n in match[1].split(",") if n.strip()]
            if len(names) > MAX_SUBCLASSES:
                ours = [n for n in names if n.startswith("bnres.")]  # the project's own first (the networks)
                shown = ", ".join((ours + [n for n in names if n not in ours])[:MAX_SUBCLASSES])
                option = "--" + action.dest.replace(".init_args", "")
                text = text[: match.start()] + f", known subclasses: {shown}, ... ({len(names)} in all; {option}.help CLASS))"
        return text

    def _format_usage(self, usage: Any, actions: Any, *args: Any, **kwargs: Any) -> str:
        text = super()._format_usage(usage, actions, *args, **kwargs)
        if text.count("\n") <= 4:
            return text
        prog = self._prog.replace(" [options]", "")
        return f"usage: {prog} [-h] [-c CONFIG] [--print_config[=flags]] [--KEY VALUE ...]\n\n"


class ShortHelp:
    """Parser mixin: :class:`HelpFormatter`, and :func:`epilog` at the end of every help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", epilog())
        super().__init__(*args, **kwargs)
