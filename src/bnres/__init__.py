"""bnres: test two textbook claims (batch norm and step size; residual connections and depth) on real data."""

__version__ = "0.1.0"


def _register_resolvers() -> None:
    """``${bnres.net_name:resnet18,${shortcut}}`` -> ``plain18`` when shortcut is false (conf/model/*.yaml):
    the record's ``model_name`` says which network was built, however it was asked for. ``bnres.if_bn``: below."""
    from omegaconf import OmegaConf

    def net_name(family: str, shortcut: bool | None) -> str:
        from bnres.models.zoo import net_name as name_of

        return name_of(family, shortcut)

    def if_bn(bn: bool, with_bn, without_bn):
        return with_bn if bn else without_bn

    if not OmegaConf.has_resolver("bnres.net_name"):
        OmegaConf.register_new_resolver("bnres.net_name", net_name)
    # ``${bnres.if_bn:${bn},1.0,0.9}``: a value that follows bn in a bn=true,false sweep (a recipe's lr per arm,
    # conf/experiment/chapter_lenet.yaml), since the basic sweeper cannot pair two swept values
    if not OmegaConf.has_resolver("bnres.if_bn"):
        OmegaConf.register_new_resolver("bnres.if_bn", if_bn)


_register_resolvers()
