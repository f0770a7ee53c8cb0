from kdflow.kfp.components.train_teacher.component import train_teacher

__all__ = ["train_teacher"]
