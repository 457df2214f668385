"""Placement: which catalog spec, and where, for one VM or a whole MCIS.

Pure code over plain dataclasses and numpy columns; no I/O and no gRPC, so tumblebug's RPCs
(recommendations:spec, mcis:plan, failover) wrap it directly:

- `candidates`: the catalog as columns (`CandidateTable`) with measured performance and estimates.
- `filters`, `weighers`: plug-in classes chosen per request by name (`plugins.Registry`).
- `recommend`: filter → weigh → weighted sum → top k, each result explained.
- `plan`: group placement as a mixed-integer program (scipy's HiGHS `milp`), `explain`: why a
  request is infeasible.
"""

from tumblebug.placement.candidates import Candidate, CandidateTable, Measurement, Point
from tumblebug.placement.errors import PlacementError
from tumblebug.placement.latency import RttMatrix, RttMeasurement
from tumblebug.placement.recommend import Ranked, Recommendation, RecommendRequest, recommend
from tumblebug.placement.requirements import Requirements, WeighOptions

__all__ = ["Candidate", "CandidateTable", "Measurement", "PlacementError", "Point", "Ranked", "RecommendRequest",
           "Recommendation", "Requirements", "RttMatrix", "RttMeasurement", "WeighOptions", "recommend"]
