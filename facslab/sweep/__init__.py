"""Optuna sweeps over any task (``facslab.tasks``); every trial an MLflow run nested under the
sweep's run.

The objective is the task's validation metric (AUs: mean PR-AUC; emotions: accuracy), averaged
over the datamodule's folds (CK+'s subject-exclusive folds; FER-2013's one official validation
split), fold mean ± std logged. Pruning uses Optuna's Lightning callback on the first fold's
per-epoch validation metric with a median or Hyperband pruner, which can act with any number of
folds. What the task chooses on the validation predictions (the AU task's per-AU thresholds,
``train.threshold_policy``) is chosen after the folds and never searched.

The starting weights are resolved once per study (per backbone) and pinned by run id on the
study; every trial and the registration use that value.

Storage: by default a journal file (``mlruns/optuna/<study>.journal``) that several local worker
processes share safely (Optuna advises against SQLite for parallel workers); a database URL
(``postgresql://…``) spreads a study over machines. Studies resume: ``n_trials`` is the total of
finished trials (complete, pruned and failed all count), a trial that raises is recorded as
failed while the study goes on, and a resumed worker's sampler starts a new random sequence so it
does not propose the finished parameter sets again. A trial whose process ended mid-way (killed,
a machine's time limit) is failed and run again with its parameters; every finished fold's
validation outputs are saved with the trial's run, and the retry reuses those whose parameters,
data, split and code are unchanged instead of training them again.
"""

from facslab.sweep.objective import Objective
from facslab.sweep.recovery import LOCAL_RETRIES
from facslab.sweep.storage import finished_study, load_study, storage_url
from facslab.sweep.workers import run_sweep

__all__ = ["LOCAL_RETRIES", "Objective", "finished_study", "load_study", "run_sweep", "storage_url"]
