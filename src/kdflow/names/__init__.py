"""Torch-free name tables: what `kdflow.config` validates params.yaml against without importing a loss,
a model or a data loader (so `kdflow.config` stays a leaf, and editing a loss file reruns only the stages
that train with it).

Each concept has one table; the code that implements a name registers against it (`kdflow.losses`,
`kdflow.models.sources`, `kdflow.data.sources`), and a name declared without an implementation, or an
implementation of an undeclared name, fails at import or in the registry tests.
"""
