"""bnres: test two textbook claims (batch norm and step size; residual connections and depth) on real data."""

__version__ = "0.1.0"


def _register_resolvers() -> None:
    """``${bnres.net_name:resnet18,${shortcut}}`` -> ``plain18`` when shortcut is false (conf/model/*.yaml):
    the record's ``model_name`` says which network was built, however it was asked for."""
    from omegaconf import OmegaConf

    def net_name(family: str, shortcut: bool | None) -> str:
        from bnres.models.zoo import net_name as name_of

        return name_of(family, shortcut)

    if not OmegaConf.has_resolver("bnres.net_name"):
        OmegaConf.register_new_resolver("bnres.net_name", net_name)


_register_resolvers()
