"""Parameter identification from noisy partial observations: ensemble Kalman methods and the exact Kalman filter."""

from hnnlab.identify.enkf import EnsembleResult as EnsembleResult
from hnnlab.identify.enkf import ensemble_kalman_filter as ensemble_kalman_filter
from hnnlab.identify.enkf import ensemble_smoother as ensemble_smoother
from hnnlab.identify.kalman import kalman_filter as kalman_filter
from hnnlab.identify.kalman import transition_matrix as transition_matrix
from hnnlab.identify.parameters import ParameterSpec as ParameterSpec
from hnnlab.identify.parameters import make_specs as make_specs
from hnnlab.identify.parameters import with_parameters as with_parameters
