import os
import re
import runpy
import sys

from setuptools import find_packages, setup

# The one place the version is written; read, not imported (the dependencies
# may not be installed yet).
with open("uacregistrant/__init__.py", encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M).group(1)

# Standard library only, so it can be read before anything is installed.
compiled = runpy.run_path("uacregistrant/compiled.py")


def extensions():
    """The hot modules compiled by mypyc, each optional: without a C compiler
    (or with UACREGISTRANT_PURE=1) the same modules install as plain Python."""
    if compiled["forced_pure"]():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("setup.py: mypyc is not installed; installing the pure-Python modules only", file=sys.stderr)
        return []
    sources = [name.replace(".", "/") + ".py" for name in compiled["MODULES"]]
    try:
        modules = mypycify(sources, opt_level="3", group_name="uacregistrant")
    except (Exception, SystemExit) as error:  # mypy refused the code (it exits): stay installable
        print(f"setup.py: mypyc failed ({error}); installing the pure-Python modules only", file=sys.stderr)
        return []
    for module in modules:
        # A missing or failing C compiler skips the extension instead of failing the install.
        module.optional = True
    return modules


setup(
    name="uac-registrant",
    version=VERSION,
    description="A SIP registrant service on Twisted, a drop-in for OpenSIPS uac_registrant",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    python_requires=">=3.11",
    # Flat layout: twisted/plugins has no __init__.py on purpose (it must not
    # replace Twisted's own package), so it is listed by name.
    packages=find_packages(include=["uacregistrant", "uacregistrant.*"]) + ["twisted.plugins"],
    package_data={"uacregistrant": ["mi/static/*"]},
    ext_modules=extensions(),
    install_requires=[
        "Twisted[tls]>=24.3",
        "zope.interface",
        "treq",
        "txpostgres",
        "psycopg2-binary",
        "PyMySQL",
        "service-identity",
        "pyOpenSSL",
        "prometheus_client",
    ],
    extras_require={
        "test": ["docutils", "pytest", "pytest-timeout", "pytest-twisted", "pytest-xdist>=3.2", "hypothesis", "opensipscli",
                 "selenium"],
    },
)
