import re

from setuptools import find_packages, setup

# The one place the version is written; read, not imported (the dependencies
# may not be installed yet).
with open("uacregistrant/__init__.py", encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M).group(1)

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
        "test": ["docutils", "pytest", "pytest-timeout", "pytest-twisted", "hypothesis", "opensipscli", "selenium"],
    },
)
