"""``python -m ferry_kube_sim``: the local cluster simulator (:mod:`ferry_kube_sim.simulator`)."""

from ferry_kube_sim.simulator import main

if __name__ == "__main__":
    main()
