"""The node's EUCAIM tiers 2 and 3: federated search as Samply Focus queries it, and the EUCAIM CDM export.

Data flows one way: ``concepts`` (the ConceptMaps: store codes <-> EUCAIM HyperOntology concepts, and
Focus's vocabularies) -> ``criteria`` (an EUCAIM API query or Beacon filters, as concepts) ->
``counting`` (subjects and studies from the store) -> ``federated`` (small-count protection and optional
Laplace noise, per dataset) -> ``beacon`` (Beacon v2 documents); ``cdm`` fills the EUCAIM common data
model from the same store with the same concepts. The HTTP routes are in ``fhir_bridge.api.eucaim``.
"""
