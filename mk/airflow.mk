# Airflow DAG checks, in a virtual environment of their own. Included from the Makefile (uses PYTHON, PY, STAMP).
# Why not .venv: apache-airflow-providers-google 22.8.0 needs google-api-python-client>=2.194, which the pipeline's
# pinned environment cannot take (pip: ResolutionImpossible), and Airflow's ~270 packages do not belong on Dataflow
# workers. The pins below are what a Composer 3 / Airflow 3 environment runs; mk/airflow-constraints.txt freezes the
# rest so the install is reproducible and resolves without backtracking (about 1.5 minutes, 2.2 GB).
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
AIRFLOW_CONSTRAINTS ?= mk/airflow-constraints.txt
AIRFLOW_PINS := apache-airflow==3.3.2 apache-airflow-providers-apache-beam==6.3.1 \
	apache-airflow-providers-google==22.8.0 apache-beam==2.77.0

.PHONY: airflow-venv test-airflow

airflow-venv: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): mk/airflow.mk $(AIRFLOW_CONSTRAINTS)
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	echo '*' > $(AIRFLOW_VENV)/.gitignore  # 2 GB that must never be committed, whatever the top .gitignore says
	$(AIRFLOW_VENV)/bin/python -m pip install -q --upgrade "pip==25.3"
	$(AIRFLOW_VENV)/bin/python -m pip install -q $(if $(AIRFLOW_CONSTRAINTS),-c $(AIRFLOW_CONSTRAINTS)) $(AIRFLOW_PINS)
	touch $@

# The DAG test runs from .venv and imports the DAGs in $(AIRFLOW_VENV) through a subprocess.
test-airflow: $(STAMP) $(AIRFLOW_STAMP)
	AEOPS_AIRFLOW_PYTHON=$(AIRFLOW_VENV)/bin/python $(PY) -m pytest tests/test_airflow_dag.py
