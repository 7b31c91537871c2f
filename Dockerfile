# Submission image for the CVPR 2025 SegFM3D interactive 3D segmentation challenge.
# Build / save (team name lowercase, no '_' or '.'):  see docs/container.md
#   docker build -t <team>:latest .
#   docker save <team>:latest | gzip > <team>.tar.gz
# The evaluator runs:  /bin/bash -c "sh predict.sh"  in WORKDIR /workspace, once per step.

# PyTorch 2.7.0, CUDA 12.6, cuDNN 9, Python 3.11 (conda in /opt/conda); runtime flavour: no compilers.
FROM pytorch/pytorch:2.7.0-cuda12.6-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /workspace

# Pinned dependencies first (cached layer). torch comes from the base image and is not reinstalled;
# cupy-cuda12x matches the base image's CUDA 12.x; it is only located here, since its CUDA libraries
# (the nvidia-* wheels of the base image's torch, found by cuda-pathfinder) load on first GPU use.
COPY requirements.txt requirements-gpu.txt ./
RUN pip install --no-cache-dir -r requirements.txt -r requirements-gpu.txt \
    && python -c "import importlib.util as u, sys, numpy, cc3d, torch; assert u.find_spec('cupy'); print(sys.version, numpy.__version__, torch.__version__)"

# Weights are baked in (nothing is downloaded at run time), then the code.
COPY weights/ ./weights/
COPY model/ ./model/
COPY infer.py predict.sh ./

# Byte-compile once here (each container start is fresh) and refuse to build without loadable weights.
RUN python -m compileall -q model infer.py \
    && python infer.py --check --device cpu

# No ENTRYPOINT: the evaluator passes its own command. This default does the same.
CMD ["sh", "predict.sh"]
