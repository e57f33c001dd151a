"""Placeholder torchvision for the emulated Gaudi, used only when no torchvision is installed.

optimum-habana imports `torchvision.transforms` in one model (glm4v) that Whisper never uses;
torchvision's PyPI wheel does not load beside the CPU torch build asrbench installs. The real
package, when importable, comes first on sys.path.
"""
