from setuptools import find_packages, setup

setup(
    name="hf_vcr",
    version="0.1.0",
    description="Visual commonsense reasoning methods (ARC, joint coupling, SOrT, EIGV, LSKD) for the Hugging Face ecosystem",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["hf_vcr", "hf_vcr.*"]),
    include_package_data=True,
    package_data={"hf_vcr": ["metrics/modules/*/*.py", "model_cards/*.j2"]},
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
    ],
    extras_require={
        "test": ["pytest>=8", "scipy"],
        "deepspeed": ["deepspeed>=0.15"],
    },
    entry_points={"console_scripts": ["hf-vcr=hf_vcr.cli:main"]},
)
