"""All of decrappify in one dock: Crappify, Train, Super-resolve and Compare as tabs.

Four docks stacked in napari's right-hand area ask for more height than a laptop screen
has; one tabbed dock shows one tool at a time at full height. Each tab is the same widget
the Plugins menu offers on its own (each scrolls when the window is short).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QTabWidget

from decrappify._napari._compare_widget import CompareWidget
from decrappify._napari._crappify_widget import CrappifyWidget
from decrappify._napari._predict_widget import PredictWidget
from decrappify._napari._train_widget import TrainWidget


class ToolsWidget(QTabWidget):
    """Dock widget holding the four tools as tabs, in the order of the workflow.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer.

    Attributes
    ----------
    crappify, train, predict, compare : QWidget
        The tools (:class:`CrappifyWidget`, :class:`TrainWidget`, :class:`PredictWidget`,
        :class:`CompareWidget`).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.crappify = CrappifyWidget(napari_viewer)
        self.train = TrainWidget(napari_viewer)
        self.predict = PredictWidget(napari_viewer)
        self.compare = CompareWidget(napari_viewer)
        for title, tool, tip in (
            ("Crappify", self.crappify, "Degrade a high-res layer into realistic low-res input"),
            ("Train", self.train, "Train a super-resolution model with NoGAN"),
            ("Super-resolve", self.predict, "Run a trained model on a layer"),
            ("Compare", self.compare, "Score a prediction against its ground truth"),
        ):
            index = self.addTab(tool, title)
            self.setTabToolTip(index, tip)
        self.setDocumentMode(True)

    def show_tool(self, name: str) -> Any:
        """Bring a tool's tab to the front.

        Parameters
        ----------
        name : {"crappify", "train", "predict", "compare"}
            The tool.

        Returns
        -------
        QWidget
            The tool.
        """
        tool = getattr(self, name)
        self.setCurrentWidget(tool)
        return tool
