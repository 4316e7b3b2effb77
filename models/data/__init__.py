"""Reference data shipped with the package, read with :mod:`importlib.resources`.

``BSB50420-units.csv`` lists the twelve units of one delivery of BSB50420 Diploma of Leadership
and Management (six core units and six electives), with codes and titles as the national
training register publishes them.
"""
