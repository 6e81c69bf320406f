from setuptools import find_packages, setup

setup(
    name="hf_vcr",
    version="0.1.0",
    description="Visual commonsense reasoning methods (ARC, joint coupling, SOrT, EIGV, LSKD) for the Hugging Face ecosystem",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # model_cards/ stays at the top of the repository and ships as the sub-package hf_vcr.model_cards.
    packages=find_packages(include=["hf_vcr", "hf_vcr.*"]) + ["hf_vcr.model_cards"],
    package_dir={"hf_vcr.model_cards": "model_cards"},
    include_package_data=True,
    package_data={
        "hf_vcr": ["metrics/modules/*/*.py", "configs/*.yaml", "configs/accelerate/*.yaml", "configs/deepspeed/*.json"],
        "hf_vcr.model_cards": ["*.j2"],
    },
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "transformers>=5.0",
        "datasets>=4.0",
        "accelerate>=1.0",
        "peft>=0.13",
        "evaluate>=0.4",
        "huggingface-hub>=1.0",
        "safetensors",
        "pillow",
        "h5py",
        "pyyaml",
        "jinja2",
        "tqdm",
        "orjson",
        "scipy",
    ],
    extras_require={
        "test": ["pytest>=8"],
        "deepspeed": ["deepspeed>=0.15"],
    },
    entry_points={"console_scripts": ["hf-vcr=hf_vcr.cli:main"]},
)
