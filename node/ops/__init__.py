"""Operations: node config, key files, network generation, metrics and the node service."""
