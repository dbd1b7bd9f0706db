"""The node's dataset description for catalogues (EUCAIM DCAT-AP) and counts for federated search.

Data flows one way: ``statistics`` (aggregate SQL over the store's index) -> ``disclosure``
(small-count protection) -> ``dcat`` (the RDF graph) -> ``service`` (caching, syntaxes, counts).
``config`` holds what only the operator knows.
"""
