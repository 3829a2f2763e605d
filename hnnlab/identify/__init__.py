"""Parameter identification from noisy partial observations: ensemble Kalman methods, the exact Kalman filter, and
gradient fitting by multiple shooting through differentiable rollouts."""

from hnnlab.identify.enkf import EnsembleResult as EnsembleResult
from hnnlab.identify.enkf import ensemble_kalman_filter as ensemble_kalman_filter
from hnnlab.identify.enkf import ensemble_smoother as ensemble_smoother
from hnnlab.identify.gradient import GradientResult as GradientResult
from hnnlab.identify.gradient import fit_parameters as fit_parameters
from hnnlab.identify.gradient import initial_window_states as initial_window_states
from hnnlab.identify.kalman import kalman_filter as kalman_filter
from hnnlab.identify.kalman import transition_matrix as transition_matrix
from hnnlab.identify.parameters import ParameterSpec as ParameterSpec
from hnnlab.identify.parameters import make_specs as make_specs
from hnnlab.identify.parameters import with_parameters as with_parameters
from hnnlab.identify.prior import initial_state_prior as initial_state_prior
from hnnlab.identify.shooting import Windows as Windows
from hnnlab.identify.shooting import shooting_loss as shooting_loss
