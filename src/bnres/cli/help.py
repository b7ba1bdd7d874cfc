"""``bnres fit --help`` short enough to read: what bnres adds first, then every option on a line or two.

jsonargparse lists every known subclass of each typed option (for ``--model.net``, every ``torch.nn.Module``
subclass: hundreds of lines) and Lightning's Trainer options carry their full docstrings. The help keeps
each option with its type and default, drops the subclass lists and the Trainer's prose (Lightning's
Trainer documentation has it; ``--trainer.<option>`` works as there), and starts with the networks, the
options that apply to some networks only and the arguments derived from the data module.
"""

from __future__ import annotations

import inspect
import re

from jsonargparse import DefaultHelpFormatter

_SUBCLASS_LIST = re.compile(r",?\s*known\s+subclasses:[^\n]*(?:\n {20,}[^\n]*)*")


def overview(prog: str) -> str:
    """What bnres adds to Lightning's options: the networks, the per-network options, the derived arguments."""
    from bnres.models import BUILDERS, MODEL_NAMES
    from bnres.models.zoo import residual_twin

    def takers(option: str) -> str:
        names = [n for n in MODEL_NAMES if option in inspect.signature(BUILDERS[residual_twin(n)]).parameters]
        if option == "shortcut":  # the plain twins are these with shortcut=false
            return ", ".join(n for n in names if residual_twin(n) == n) + " (false: the plain twin)"
        return ", ".join(names)

    lines = [
        "bnres: the networks, their options, and what comes from the data",
        f"  --model.net.name      one of: {', '.join(MODEL_NAMES)}",
        "  --model.net.bn, .bn_placement, .bn_impl, .bn_momentum, .bn_eps   the BN knobs (every network)",
        *(f"  --model.net.{opt:<9} for {takers(opt)} only (null: the network's default)" for opt in ("depth", "width", "activation", "stem", "shortcut")),
        "  derived, never given: model.net in_channels, num_classes, image_size and model.num_classes (from the",
        "                        data module); data.shuffle_seed (from --seed_everything)",
        f"  one class's options:  {prog} --model.net.help bnres.cli.main.Network | --data.help MNIST5kDataModule |",
        "                        --model.optimizer.help torch.optim.SGD | --trainer.callbacks.help ModelCheckpoint",
        "  defaults: those of conf/train.yaml (bnres fit --print_config shows them all)",
    ]
    return "\n".join(lines)


def shorten(help_text: str, prog: str, usage: str) -> str:
    """The parser's full help, shortened (see the module docstring)."""
    text = _SUBCLASS_LIST.sub("", help_text)
    blocks = re.split(r"\n(?=\S)", text)  # a block: one section title and its options
    out: list[str] = [usage.rstrip(), "", overview(prog)]
    for block in blocks[1:] if blocks and blocks[0].startswith("usage:") else blocks:
        title, _, body = block.partition("\n")
        if title.startswith("Customize every aspect of training"):
            body = _trainer_options(body)
        out += ["", title, body.rstrip()]
    return "\n".join(out).rstrip() + "\n"


def _trainer_options(body: str) -> str:
    """Each Trainer option as its name plus ``(type, default)``, without Lightning's description."""
    entries = re.split(r"\n(?=  -)", "\n" + body)
    kept = []
    for entry in entries:
        entry = entry.strip("\n")
        if not entry.strip():
            continue
        head, _, rest = entry.partition("\n")
        if ".help " in head or head.strip().endswith(".help"):
            continue  # "--trainer.logger.help CLASS": the overview says how to ask for a class's options
        flat = " ".join(rest.split())
        match = re.search(r"\((?:required, )?type: .*$", flat)
        typed = match.group(0).rstrip(")") + ")" if match else ""
        kept.append(f"{head}\n{' ' * 24}{typed}" if match else head if not rest else f"{head}\n{rest}")
    return "\n".join(kept)


#: the network's arguments the CLI links from the data module (bnres.cli.main: parser.link_arguments)
DERIVED_FROM_DATA = ("in_channels", "num_classes", "image_size")


class HelpFormatter(DefaultHelpFormatter):
    """Marks the network arguments taken from the data module as such, not as "required"."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        if action.dest.rsplit(".", 1)[-1] in DERIVED_FROM_DATA and ".net." in f".{action.dest}":
            text = text.replace("(required, ", "(derived from the data module, ")
        return text
