# aeops images for Dataflow. No Docker engine runs in CI: `make test` lints this file with hadolint and checks
# that everything it copies exists and every pin it installs is setup.py's (tests/test_packaging.py).
#
#   docker build --target sdk  -t REGION-docker.pkg.dev/PROJECT/aeops/sdk:0.1.0 .    # workers: --sdk_container_image
#   docker build --target flex -t REGION-docker.pkg.dev/PROJECT/aeops/flex:0.1.0 .   # Flex Template launcher (+ workers)
#
# The base is the Beam SDK image of the pinned Beam version (setup.py: apache-beam[gcp]==2.77.0): the launcher and
# the workers must run the same Beam, and the image's /opt/apache/beam/boot is what Dataflow starts on workers.
ARG BEAM_IMAGE=apache/beam_python3.11_sdk:2.77.0
# The launcher binary only; bump the dated tag when Google publishes a new release of it.
ARG LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20240628_RC00

# --- wheel: build aeops (code + aeops/pretrained model as package data) without keeping the source around ---
FROM ${BEAM_IMAGE} AS wheel
WORKDIR /src
COPY setup.py ./
COPY aeops ./aeops
COPY pipelines ./pipelines
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${LAUNCHER_IMAGE} AS launcher

# --- sdk: the worker container. TensorFlow with its CUDA libraries from pip, for worker_accelerator workers; on
# CPU workers the same image runs on the CPU. The NVIDIA driver comes from the host (install-nvidia-driver). ---
FROM ${BEAM_IMAGE} AS sdk
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir "tensorflow[and-cuda]==2.21.0" /tmp/wheels/aeops-*.whl \
    && rm -rf /tmp/wheels \
    && python -c "import aeops, apache_beam, tensorflow"
# One model per GPU shared by the SDK processes only works if TensorFlow does not grab the whole card at start.
ENV TF_FORCE_GPU_ALLOW_GROWTH=true \
    TF_CPP_MIN_LOG_LEVEL=2

# --- flex: the Flex Template launcher. Same image as the workers (pass it as sdk_container_image too), so the
# graph is built with exactly the code and libraries that run it. The source is copied beside the installed
# package only so that `setup_file: ./setup.py` in configs/dataflow*.yaml resolves in the launcher. ---
FROM sdk AS flex
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
WORKDIR /template
COPY setup.py ./
COPY aeops ./aeops
COPY pipelines ./pipelines
COPY configs ./configs
COPY templates/main.py ./main.py
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py
ENTRYPOINT ["/opt/google/dataflow/python_template_launcher"]
