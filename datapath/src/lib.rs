//! userxdp datapath: devices, workers, verdict handling and the command-line tools.
