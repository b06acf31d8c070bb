"""Exchange with other tools' files: reading and writing formats that frogs does not own.

``safe_pickle`` is the one restricted unpickler for every pickle frogs reads that it did not
write itself (CIFAR-10 batches, other tools' poisons); ``benchmark`` is the file format of
poisoning-benchmark ("Just How Toxic is Data Poisoning?"), in which researchers exchange
poisons; ``make_setups`` builds a setups file in that format for a frogs dataset;
``fixed_trials`` turns a setups file or another tool's poisons into frogs trials. Nothing here is
imported by ``import frogs``; import the submodule you need.
"""
